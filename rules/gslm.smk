# GSLM (Mai et al., "Exploit CAM by itself"): stage 1 is the CAM classifier (GLM) with its
# `first_source` CAMs; stage n >= 2 is a Specific Learning Module (training method `slm`)
# trained from stage n-1's network on the confidence CAM (Coarse Generation) of stage n-1.
# Every stage writes a CAM cache at results/{dataset}/{classifier}/{gslm}/stage{n}/{split}/
# cams.h5, so `{gslm}/stage{n}` is a CAM source for the evaluator and the refiners like any
# other.


ruleorder: make_stage_cams > make_cams


rule coarse_generation:
    """GSLM Coarse Generation (Eq. 3): the confidence CAM of a stage's CAMs."""
    input:
        dataset_marker,
        cache=gslm_stage_cache,
    output:
        labels="results/{dataset}/{classifier}/{gslm}/stage{n}/{split}/confidence.h5",
    params:
        labels=lambda wc: affinity_label_config(gslm_config(wc.gslm)["coarse_generation"]),
        data=lambda wc: split_params(wc.dataset, wc.split),
    threads: W.threads
    resources:
        **stage_resources("affinity_labels"),
    log:
        "results/logs/{dataset}/{classifier}/{gslm}/stage{n}/{split}/coarse_generation.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/affinity_labels.py"


rule train_slm:
    """GSLM Specific Learning Module of stage n, trained from stage n-1's network."""
    input:
        unpack(slm_training_inputs),
    output:
        checkpoint="results/{dataset}/{classifier}/{gslm}/stage{n}/classifier.pt",
        metrics="results/{dataset}/{classifier}/{gslm}/stage{n}/metrics.csv",
        curve=report(
            "results/{dataset}/{classifier}/{gslm}/stage{n}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="GSLM SLMs",
        ),
    params:
        classifier=lambda wc: slm_config(wc.gslm),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("train_slm"),
    log:
        "results/logs/{dataset}/{classifier}/{gslm}/stage{n}/train_slm.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_classifier.py"


rule make_stage_cams:
    """CAM cache of a GSLM stage: results/{dataset}/{classifier}/{gslm}/stage{n}/{split}/cams.h5."""
    input:
        dataset_marker,
        checkpoint="results/{dataset}/{classifier}/{gslm}/stage{n}/classifier.pt",
    output:
        cache="results/{dataset}/{classifier}/{gslm}/stage{n}/{split}/cams.h5",
    params:
        source={**config["cams"], "method": "cam"},
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("make_cams"),
    log:
        "results/logs/{dataset}/{classifier}/{gslm}/stage{n}/{split}/make_cams.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/make_cams.py"


rule gslm_stage_figure:
    """The CAMs of every stage of a GSLM configuration (GSLM Fig. 4)."""
    input:
        dataset_marker,
        caches=lambda wc: gslm_stage_files(wc, "cams.h5"),
        evals=lambda wc: gslm_stage_files(wc, "eval.json"),
    output:
        png=report(
            "results/{dataset}/{classifier}/{gslm}/stages.png",
            caption="../docs/report/gslm_stages.rst",
            category="GSLM stages",
            labels={"classifier": "{classifier}", "gslm": "{gslm}"},
        ),
    params:
        data=lambda wc: dataset_params(wc.dataset, "eval_split"),
    log:
        "results/logs/{dataset}/{classifier}/{gslm}/stage_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/gslm_stage_figure.py"
