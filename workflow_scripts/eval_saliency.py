"""Rule `eval_saliency`: P-NOC Table 6's score of a saliency cache."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_eval_saliency  # noqa: E402

run_logged(snakemake.log[0], run_eval_saliency, snakemake.output.json,
           snakemake.input.saliency, snakemake.input.get("priors"),
           snakemake.params.thresholds, snakemake.params.data)
