"""Rule `export_submission`: a DeepLab's predictions on a split as the VOC 2012 server's archive."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_export_submission  # noqa: E402

run_logged(snakemake.log[0], run_export_submission, snakemake.input.model,
           snakemake.output.archive, snakemake.params.evaluation, snakemake.params.data,
           snakemake.params.runtime, snakemake.threads)
