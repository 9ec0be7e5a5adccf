# The evaluator reads any CAM cache: threshold sweep, m_under/m_over, optional dense CRF.


rule eval_cams:
    input:
        dataset_marker,
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
    output:
        json="results/{dataset}/{classifier}/{source}/{split}/eval.json",
        csv="results/{dataset}/{classifier}/{source}/{split}/eval.csv",
    params:
        evaluation=config["evaluation"],
        data=lambda wc: {**dataset_params(wc.dataset, "eval_split"), "split": wc.split},
    threads: W.threads
    resources:
        **stage_resources("eval_cams"),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/eval_cams.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_cams.py"


rule cam_figure:
    input:
        dataset_marker,
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
        json="results/{dataset}/{classifier}/{source}/{split}/eval.json",
    output:
        png="results/{dataset}/{classifier}/{source}/{split}/figure.png",
    params:
        data=lambda wc: {**dataset_params(wc.dataset, "eval_split"), "split": wc.split},
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/cam_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/cam_figure.py"
