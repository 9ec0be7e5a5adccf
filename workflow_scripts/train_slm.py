"""Rule `train_slm`: one Specific Learning stage of GSLM (seed 000 Eq. 4-6)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_train_slm  # noqa: E402

run_logged(snakemake.log[0], run_train_slm, snakemake.output.model, snakemake.params.slm,
           snakemake.input.previous, snakemake.input.confidence, snakemake.params.data,
           snakemake.params.runtime, snakemake.threads)
