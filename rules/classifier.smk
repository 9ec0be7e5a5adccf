# Stage 1: the CAM classifier (IRN settings, ../shared/conventions.md).


rule train_classifier:
    input:
        dataset_marker,
    output:
        checkpoint="results/{dataset}/{classifier}/classifier.pt",
    params:
        classifier=lambda wc: classifier_config(wc.classifier),
        data=lambda wc: train_data_params(wc.dataset, wc.classifier),
        runtime=runtime_params(),
    threads: config["runtime"]["workers"]
    resources:
        gpu=stage_resource("train_classifier", "gpu", 1),
        mem_mb=stage_resource("train_classifier", "mem_mb", 16000),
        runtime=stage_resource("train_classifier", "runtime", 240),
    log:
        "results/logs/{dataset}/{classifier}/train_classifier.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_classifier.py"
