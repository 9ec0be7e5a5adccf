"""Rule `eval_epochs`: the priors of every epoch checkpoint of a classifier, without TTA."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_eval_epochs  # noqa: E402

run_logged(snakemake.log[0], run_eval_epochs, snakemake.input.epochs, snakemake.output.json,
           snakemake.params.evaluation, snakemake.params.data, snakemake.params.runtime,
           snakemake.threads)
