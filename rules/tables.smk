# Paper tables as targets: results/tables/{table}.csv and .md, one generic rule.
# A new table registers the function listing its inputs in TABLE_INPUTS and its builder in
# camflow/tables.py (see docs/architecture.md).


def eval_path(classifier, source, dataset=None, split=None):
    dataset = dataset or config["dataset"]
    split = split or dataset_config(dataset)["eval_split"]
    classifier_config(classifier)
    return f"results/{dataset}/{classifier}/{source}/{split}/eval.json"


def cam_seeds_inputs(spec):
    return [eval_path(name, spec["source"]) for name in spec["rows"]]


TABLE_INPUTS = {"cam_seeds": cam_seeds_inputs}


def table_spec(name):
    if name not in config["tables"] or name not in TABLE_INPUTS:
        config_error(f"tables.{name}", f"unknown table {name!r}; known: {sorted(TABLE_INPUTS)}")
    return config["tables"][name]


rule table:
    input:
        lambda wc: TABLE_INPUTS[wc.table](table_spec(wc.table)),
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
