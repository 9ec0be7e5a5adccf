# Stage 1: the CAM network, trained by its method (`classifiers.<name>.method`, default `cam`;
# camflow/methods/base.py). Writes the checkpoint, metrics.csv and the training curve. A method
# that reads other classifiers (OC-CSE's `oc`) gets their checkpoints as named inputs. A
# classifier with `keep_epochs: true` is trained by `train_classifier_epochs`, which also keeps
# every epoch's checkpoint; `eval_epochs` evaluates them.


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
    wildcard_constraints:
        classifier=W.classifier_pattern(keep_epochs=False),
    log:
        "results/logs/{dataset}/{classifier}/train_classifier.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_classifier.py"


use rule train_classifier as train_classifier_epochs with:
    output:
        checkpoint="results/{dataset}/{classifier}/classifier.pt",
        metrics="results/{dataset}/{classifier}/metrics.csv",
        curve=report(
            "results/{dataset}/{classifier}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="CAM networks",
        ),
        epochs=directory("results/{dataset}/{classifier}/epochs"),
    wildcard_constraints:
        classifier=W.classifier_pattern(keep_epochs=True),


rule eval_epochs:
    """The priors of every epoch of a classifier with `keep_epochs`, without TTA (P-NOC,
    David et al., Tables 2 and 4: E1...E15)."""
    input:
        dataset_marker,
        epochs="results/{dataset}/{classifier}/epochs",
    output:
        json="results/{dataset}/{classifier}/epoch_eval/{split}.json",
    params:
        evaluation=lambda wc: {"thresholds": config["evaluation"]["thresholds"],
                               "grid": config["cams"]["grid"]},
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("eval_cams"),
    log:
        "results/logs/{dataset}/{classifier}/eval_epochs/{split}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_epochs.py"
