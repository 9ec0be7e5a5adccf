"""Rule `gslm_stage_figure`: every stage's CAM of one GSLM configuration on a few images."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_gslm_stage_figure  # noqa: E402

run_logged(snakemake.log[0], run_gslm_stage_figure,
           list(snakemake.input.caches), list(snakemake.input.evals), snakemake.params.data,
           f"GSLM {snakemake.wildcards.gslm}", snakemake.output.png)
