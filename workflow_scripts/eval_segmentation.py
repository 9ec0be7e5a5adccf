"""Rule `eval_segmentation`: DeepLab mIoU with optional multi-scale + flip and dense CRF."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_eval_segmentation  # noqa: E402

run_logged(snakemake.log[0], run_eval_segmentation, snakemake.input.model, snakemake.output.json,
           snakemake.params.evaluation, snakemake.params.data, snakemake.params.runtime,
           snakemake.threads)
