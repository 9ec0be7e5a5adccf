"""Rule `random_walk`: pseudo masks (palette PNGs) and refined scores from a CAM cache."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_random_walk  # noqa: E402

run_logged(snakemake.log[0], run_random_walk, snakemake.input.model, snakemake.input.cache,
           snakemake.params.refiner, snakemake.params.data, snakemake.output.masks,
           snakemake.output.scores, snakemake.params.runtime, snakemake.threads)
