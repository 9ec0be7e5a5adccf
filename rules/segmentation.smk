# Segmentation: DeepLab trained on a pseudo-mask set ({masks} = {classifier}/{source}/{refiner})
# or on the ground truth ({masks} = gt, the fully supervised upper bound), evaluated on a split.


rule train_segmentation:
    """Train DeepLab on pseudo masks (or the ground truth: the upper bound)."""
    input:
        unpack(segmentation_training_inputs),
    output:
        model="results/{dataset}/segmentation/{segmenter}/{masks}/model.pt",
        metrics="results/{dataset}/segmentation/{segmenter}/{masks}/metrics.csv",
        curve=report(
            "results/{dataset}/segmentation/{segmenter}/{masks}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="segmenters",
        ),
    params:
        segmenter=lambda wc: segmenter_config(wc.segmenter),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("train_segmentation"),
    log:
        "results/logs/{dataset}/segmentation/{segmenter}/{masks}/train_segmentation.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_segmentation.py"


rule eval_segmentation:
    """Segmentation mIoU (multi-scale + flip, +CRF) of a trained DeepLab."""
    input:
        dataset_marker,
        model="results/{dataset}/segmentation/{segmenter}/{masks}/model.pt",
    output:
        json="results/{dataset}/segmentation/{segmenter}/{masks}/{split}/eval.json",
    params:
        evaluation=config["segmentation_eval"],
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("eval_segmentation"),
    log:
        "results/logs/{dataset}/segmentation/{segmenter}/{masks}/{split}/eval_segmentation.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_segmentation.py"


# The PASCAL VOC 2012 evaluation server's archive (comp6) of the predictions on a split with
# the settings of `segmentation_eval`; {split} = test, the images VOC 2012 gives no masks for.
rule export_submission:
    """VOC 2012 test-server archive of a DeepLab's predictions (multi-scale + flip, +CRF)."""
    input:
        dataset_marker,
        model="results/{dataset}/segmentation/{segmenter}/{masks}/model.pt",
    output:
        archive="results/{dataset}/segmentation/{segmenter}/{masks}/{split}/submission.tar.gz",
    params:
        evaluation=config["segmentation_eval"],
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("export_submission"),
    log:
        "results/logs/{dataset}/segmentation/{segmenter}/{masks}/{split}/export_submission.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/export_submission.py"
