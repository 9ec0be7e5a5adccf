"""Rule `train_saliency`: train a learned saliency source (C²AM, C²AM-H, the "R." refiner)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_train_saliency  # noqa: E402

inputs = {k: v for k, v in snakemake.input.items() if k not in ("marker", "checks")}
run_logged(snakemake.log[0], run_train_saliency, snakemake.output.model,
           snakemake.params.saliency, inputs, snakemake.params.data, snakemake.params.runtime,
           snakemake.threads)
