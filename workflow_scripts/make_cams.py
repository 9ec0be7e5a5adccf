"""Rule `make_cams`: a CAM source (multi-scale + flip) of a trained classifier into the cache."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_make_cams  # noqa: E402

run_logged(snakemake.log[0], run_make_cams,
           snakemake.output.cache, snakemake.input.checkpoint,
           snakemake.params.source, snakemake.params.data, snakemake.params.runtime,
           snakemake.threads)
