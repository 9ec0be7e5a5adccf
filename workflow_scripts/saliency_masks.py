"""Rule `saliency_masks`: the pseudo-saliency masks a saliency refiner trains on."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_saliency_masks  # noqa: E402

run_logged(snakemake.log[0], run_saliency_masks, snakemake.output.masks, snakemake.input.cache,
           snakemake.params.threshold, snakemake.params.crf, snakemake.params.data,
           snakemake.threads)
