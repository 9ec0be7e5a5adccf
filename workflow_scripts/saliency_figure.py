"""Rule `saliency_figure`: a saliency source's maps on a few images (P-NOC Fig. 8)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_saliency_figure  # noqa: E402

run_logged(snakemake.log[0], run_saliency_figure, snakemake.input.saliency,
           snakemake.input.evaluation, snakemake.params.data,
           f"saliency {snakemake.wildcards.saliency}", snakemake.output.png)
