"""Rule `make_saliency`: the saliency cache of a split, from any saliency source."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_make_saliency  # noqa: E402

inputs = {k: v for k, v in snakemake.input.items() if k not in ("marker", "model")}
run_logged(snakemake.log[0], run_make_saliency, snakemake.output.saliency,
           snakemake.params.saliency, inputs, snakemake.input.get("model"),
           snakemake.params.data, snakemake.params.runtime, snakemake.threads)
