"""Rule `synthetic`: generate the embedded synthetic benchmark (docs/synthetic.md)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_synthetic  # noqa: E402

run_logged(snakemake.log[0], run_synthetic,
           snakemake.params.root, snakemake.params.generate, snakemake.threads)
