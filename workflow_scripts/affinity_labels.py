"""Rule `affinity_labels`: IRN- or PSA-style affinity labels from a CAM cache."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_affinity_labels  # noqa: E402

run_logged(snakemake.log[0], run_affinity_labels, snakemake.input.cache, snakemake.output.labels,
           snakemake.wildcards.style, snakemake.params.labels, snakemake.params.data,
           snakemake.threads)
