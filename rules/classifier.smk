# Stage 1: the CAM network, trained by its method (`classifiers.<name>.method`, default `cam`;
# camflow/methods/base.py). Writes the checkpoint, metrics.csv and the training curve. A method
# that reads other classifiers (OC-CSE's `oc`) gets their checkpoints as named inputs.


rule train_classifier:
    """Train a CAM network by its method: results/{dataset}/{classifier}/classifier.pt."""
    input:
        unpack(classifier_training_inputs),
    output:
        checkpoint="results/{dataset}/{classifier}/classifier.pt",
        metrics="results/{dataset}/{classifier}/metrics.csv",
        curve=report(
            "results/{dataset}/{classifier}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="CAM networks",
        ),
    params:
        classifier=lambda wc: classifier_config(wc.classifier),
        data=lambda wc: train_data_params(wc.dataset, wc.classifier),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("train_classifier"),
    log:
        "results/logs/{dataset}/{classifier}/train_classifier.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_classifier.py"
