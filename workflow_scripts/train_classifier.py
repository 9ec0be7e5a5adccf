"""Rules `train_classifier` and `train_slm`: train a CAM network with its method (resumes
after an interruption); named inputs other than the dataset marker go to the method."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_train_classifier  # noqa: E402

inputs = {name: str(snakemake.input[name]) for name in snakemake.input.keys()
          if name not in ("marker", "checks")}
run_logged(snakemake.log[0], run_train_classifier,
           snakemake.output.checkpoint, snakemake.params.classifier,
           snakemake.params.data, snakemake.params.runtime, snakemake.threads, inputs,
           getattr(snakemake.output, "epochs", None))
