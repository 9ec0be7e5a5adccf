"""Rule `train_segmentation`: DeepLab on pseudo masks or on the ground truth."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_train_segmentation  # noqa: E402

masks = snakemake.input.get("masks")
run_logged(snakemake.log[0], run_train_segmentation, snakemake.output.model,
           snakemake.params.segmenter, masks, snakemake.params.data, snakemake.params.runtime,
           snakemake.threads)
