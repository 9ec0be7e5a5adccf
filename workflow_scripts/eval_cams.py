"""Rule `eval_cams`: evaluate any CAM cache (threshold sweep, m_under/m_over, dense CRF)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_eval_cams  # noqa: E402

run_logged(snakemake.log[0], run_eval_cams,
           snakemake.input.cache, snakemake.output.json,
           snakemake.output.csv, snakemake.params.evaluation, snakemake.params.data,
           snakemake.threads)
