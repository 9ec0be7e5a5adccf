"""Rule `refine`: pseudo masks (palette PNGs) and refined scores of a CAM cache, with any
refiner (a learned one's network, or the source's seed evaluation for a `best` threshold)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_refine  # noqa: E402

run_logged(snakemake.log[0], run_refine, snakemake.input.get("model"), snakemake.input.cache,
           snakemake.params.refiner, snakemake.params.data, snakemake.output.masks,
           snakemake.output.scores, snakemake.params.runtime, snakemake.threads,
           snakemake.input.get("seed_eval"))
