"""Rule `table_figure`: results/tables/{table}.png from the evaluations its table reads."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_table_figure  # noqa: E402

run_logged(snakemake.log[0], run_table_figure,
           snakemake.wildcards.table, list(snakemake.input),
           snakemake.params.spec, snakemake.params.dataset, snakemake.output.png)
