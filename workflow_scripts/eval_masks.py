"""Rule `eval_masks`: pseudo-mask mIoU with the seeds' evaluator."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_eval_masks  # noqa: E402

run_logged(snakemake.log[0], run_eval_masks, snakemake.input.masks, snakemake.output.json,
           snakemake.params.data, snakemake.threads)
