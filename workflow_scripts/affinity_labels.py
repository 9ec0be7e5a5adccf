"""Rules `affinity_labels` and `coarse_generation`: IRN/PSA affinity labels, GSLM confidence."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_affinity_labels  # noqa: E402

run_logged(snakemake.log[0], run_affinity_labels, snakemake.input.cache, snakemake.output.labels,
           snakemake.params.labels, snakemake.params.data, snakemake.threads,
           snakemake.input.get("saliency"))
