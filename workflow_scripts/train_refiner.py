"""Rule `train_refiner`: train a learned refiner (IRN, AffinityNet, ...) on affinity labels."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_train_refiner  # noqa: E402

run_logged(snakemake.log[0], run_train_refiner, snakemake.output.model, snakemake.params.refiner,
           snakemake.input.labels, snakemake.input.classifier, snakemake.params.data,
           snakemake.params.runtime, snakemake.threads)
