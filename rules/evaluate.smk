# The evaluator reads any CAM cache: threshold sweep, m_under/m_over, optional dense CRF.


rule eval_cams:
    """Seed evaluation of a CAM cache: threshold sweep, per-class IoU, m_under/m_over, +CRF."""
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
    """CAM overlays, seeds and the mIoU-vs-threshold curve of an evaluated CAM cache."""
    input:
        dataset_marker,
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
        json="results/{dataset}/{classifier}/{source}/{split}/eval.json",
    output:
        png=report(
            "results/{dataset}/{classifier}/{source}/{split}/figure.png",
            caption="../docs/report/cam_figure.rst",
            category="CAM seeds",
            subcategory="{classifier}",
            labels={"source": "{source}", "split": "{split}"},
        ),
    params:
        data=lambda wc: {**dataset_params(wc.dataset, "eval_split"), "split": wc.split},
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/cam_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/cam_figure.py"


rule class_properties:
    """Label occurrence O, relative size %S, co-occurrence %C and label-set size L of every
    class of a split (P-NOC, David et al., Tables 1 and 3)."""
    input:
        dataset_marker,
        dataset_checks,
    output:
        json="results/{dataset}/class_properties/{split}.json",
    params:
        data=lambda wc: split_params(wc.dataset, wc.split),
    log:
        "results/logs/{dataset}/class_properties/{split}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/class_properties.py"
