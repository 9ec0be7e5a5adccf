"""Rule `table`: results/{dataset}/tables/{table}.csv, .md, .html and the per-class IoU figure
from the evaluations it names."""

import sys
from pathlib import Path

snakemake = globals()["snakemake"]  # injected by Snakemake's `script:` directive
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from camflow.runtime import run_logged  # noqa: E402
from camflow.stages import run_table  # noqa: E402

run_logged(snakemake.log[0], run_table,
           snakemake.wildcards.table, dict(snakemake.params.inputs),
           snakemake.params.spec, dict(snakemake.params.about), snakemake.wildcards.dataset,
           dict(snakemake.output))
