# Paper tables as targets: results/{dataset}/tables/{table}.csv and .md (and .png for the
# tables with a figure), one generic rule. A table is a registered class in camflow/tables.py
# that names its inputs by key (see docs/architecture.md); the key -> file mapping reaches the
# job through `params:`, so reordering a table's config lists cannot shuffle its numbers.


rule table:
    input:
        lambda wc: list(table_inputs(wc.table, wc.dataset).values()),
    output:
        csv="results/{dataset}/tables/{table}.csv",
        md="results/{dataset}/tables/{table}.md",
    params:
        spec=lambda wc: table_spec(wc.table),
        inputs=lambda wc: table_inputs(wc.table, wc.dataset),
    log:
        "results/logs/{dataset}/tables/{table}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table.py"


rule table_figure:
    input:
        lambda wc: list(table_inputs(wc.table, wc.dataset).values()),
    output:
        png="results/{dataset}/tables/{table}.png",
    wildcard_constraints:
        table="|".join(TABLES_WITH_FIGURES),
    params:
        spec=lambda wc: table_spec(wc.table),
        inputs=lambda wc: table_inputs(wc.table, wc.dataset),
    log:
        "results/logs/{dataset}/tables/{table}_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table_figure.py"
