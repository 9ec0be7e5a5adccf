# Paper tables as targets: results/tables/{table}.csv and .md, one generic rule.
# A new table registers the function listing its inputs in TABLE_INPUTS and its builder in
# camflow/tables.py (see docs/architecture.md).


rule table:
    input:
        lambda wc: table_inputs(wc.table),
    output:
        csv="results/tables/{table}.csv",
        md="results/tables/{table}.md",
    params:
        spec=lambda wc: table_spec(wc.table),
        dataset=config["dataset"],
    log:
        "results/logs/tables/{table}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table.py"


rule table_figure:
    input:
        lambda wc: table_inputs(wc.table),
    output:
        png="results/tables/{table}.png",
    wildcard_constraints:
        table="gslm_fig5|gslm_fig8",  # the tables with a figure (camflow.figures.TABLE_FIGURES)
    params:
        spec=lambda wc: table_spec(wc.table),
        dataset=config["dataset"],
    log:
        "results/logs/tables/{table}_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table_figure.py"
