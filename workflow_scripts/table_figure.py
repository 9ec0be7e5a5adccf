"""Rule `table_figure`: results/{dataset}/tables/{table}.png from its table's evaluations."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_table_figure  # noqa: E402

run_logged(snakemake.log[0], run_table_figure,
           snakemake.wildcards.table, dict(snakemake.params.inputs),
           snakemake.params.spec, snakemake.wildcards.dataset, snakemake.output.png)
