"""Rule `synthetic`: generate the embedded synthetic benchmark (docs/synthetic.md)."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import setup_logging  # noqa: E402
from camflow.stages import run_synthetic  # noqa: E402

setup_logging(snakemake.log[0])
run_synthetic(snakemake.params.root, snakemake.params.generate, snakemake.threads)
