# Paper tables as targets: results/{dataset}/tables/{table}.csv, .md, .html and _classes.png
# (and .png for the tables with a figure), one generic rule. A table is a registered class in
# camflow/tables.py that names its inputs by key (see docs/architecture.md); the key -> file
# mapping reaches the job through `params:`, so reordering a table's config lists cannot
# shuffle its numbers. Every configured table is also a target rule of its own name
# (`snakemake gslm_table1`, `snakemake --list-target-rules`), which builds it with the figures
# the report shows for it.


rule table:
    """A paper table as CSV, Markdown and HTML, with its per-class IoU figure."""
    input:
        lambda wc: list(table_inputs(wc.table, wc.dataset).values()),
    output:
        csv="results/{dataset}/tables/{table}.csv",
        md="results/{dataset}/tables/{table}.md",
        html=report(
            "results/{dataset}/tables/{table}.html",
            caption="../docs/report/table.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "figure": "the table"},
        ),
        classes=report(
            "results/{dataset}/tables/{table}_classes.png",
            caption="../docs/report/class_iou.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "figure": "per-class IoU"},
        ),
    params:
        spec=lambda wc: table_spec(wc.table),
        inputs=lambda wc: table_inputs(wc.table, wc.dataset),
        about=lambda wc: table_class(wc.table).about(),
    log:
        "results/logs/{dataset}/tables/{table}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table.py"


rule table_figure:
    """The figure of a paper table that has one (GSLM Figs. 5 and 8)."""
    input:
        lambda wc: list(table_inputs(wc.table, wc.dataset).values()),
    output:
        png=report(
            "results/{dataset}/tables/{table}.png",
            caption="../docs/report/table_figure.rst",
            category="Tables",
            subcategory="{table}",
            labels={"table": "{table}", "figure": "its figure"},
        ),
    wildcard_constraints:
        table="|".join(TABLES_WITH_FIGURES),
    params:
        spec=lambda wc: table_spec(wc.table),
        inputs=lambda wc: table_inputs(wc.table, wc.dataset),
        about=lambda wc: table_class(wc.table).about(),
    log:
        "results/logs/{dataset}/tables/{table}_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/table_figure.py"


for _table in config["tables"]:

    rule:
        name:
            _table
        input:
            W.table_targets(_table),

    workflow.get_rule(_table).docstring = W.table_description(_table)


rule results_doc:
    """docs/results/{dataset}.md: the tables of `targets` as built, with their figures."""
    input:
        lambda wc: [f for t in config["targets"] for f in W.table_targets(t, wc.dataset)],
    output:
        md="docs/results/{dataset}.md",
        figures=directory("docs/results/{dataset}"),
    params:
        tables=lambda wc: {t: W.table_targets(t, wc.dataset) for t in config["targets"]},
        about=lambda wc: {t: table_class(t).about() for t in config["targets"]},
        # config.yaml first, then the overlays in the order they were merged
        configfiles=sorted((os.path.relpath(f) for f in workflow.configfiles),
                           key=lambda f: f != "config.yaml"),
    log:
        "results/logs/{dataset}/results_doc.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/results_doc.py"
