"""Rule `results_doc`: docs/results/{dataset}.md from the tables and figures as built."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_results_doc  # noqa: E402

run_logged(snakemake.log[0], run_results_doc,
           dict(snakemake.params.tables), dict(snakemake.params.about),
           list(snakemake.params.configfiles), snakemake.wildcards.dataset,
           snakemake.output.md, snakemake.output.figures)
