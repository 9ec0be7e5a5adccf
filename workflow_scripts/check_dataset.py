"""Rule `check_dataset`: every image and mask of a split checked before any training."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_check_dataset  # noqa: E402

run_logged(snakemake.log[0], run_check_dataset, snakemake.output.report, snakemake.params.data)
