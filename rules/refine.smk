# Refinement: affinity labels -> a learned refiner (IRN, AffinityNet) -> pseudo masks -> mask
# mIoU; or a refiner that learns nothing (crf: seeds + dense CRF). Refiners are named under
# `refiners:` (their `method` is a registered refiner, camflow/refine/refiners.py); a learned
# one trains on the affinity labels of the dataset's train_split; every one refines the CAM
# cache of any split.


rule affinity_labels:
    """Affinity labels (confident fg / bg / ignored) of a CAM cache, by style (`saliency`:
    with the split's saliency cache, P-NOC Sec. 5)."""
    input:
        unpack(W.affinity_label_inputs),
    output:
        labels="results/{dataset}/{classifier}/{source}/{split}/affinity_labels/{style}.h5",
    params:
        labels=lambda wc: affinity_label_config(wc.style),
        data=lambda wc: split_params(wc.dataset, wc.split),
    threads: W.threads
    resources:
        **stage_resources("affinity_labels"),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/affinity_labels_{style}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/affinity_labels.py"


rule train_refiner:
    """Train a random-walk refiner (IRN, AffinityNet) on affinity labels."""
    input:
        unpack(refiner_training_inputs),
    output:
        model="results/{dataset}/{classifier}/{source}/{refiner}/model.pt",
        metrics="results/{dataset}/{classifier}/{source}/{refiner}/metrics.csv",
        curve=report(
            "results/{dataset}/{classifier}/{source}/{refiner}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="refiners",
        ),
    params:
        refiner=lambda wc: refiner_training_config(wc.refiner),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("train_refiner"),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/train_refiner.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_refiner.py"


rule refine:
    """Pseudo masks of a CAM cache by a refiner (random walk, or seeds + CRF)."""
    input:
        unpack(refine_inputs),
    output:
        masks=directory("results/{dataset}/{classifier}/{source}/{refiner}/{split}/masks"),
        scores="results/{dataset}/{classifier}/{source}/{refiner}/{split}/scores.h5",
    params:
        refiner=lambda wc: refiner_inference_config(wc.refiner),
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("refine"),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/{split}/refine.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/refine.py"


rule eval_masks:
    """mIoU of a pseudo-mask set."""
    input:
        dataset_marker,
        masks="results/{dataset}/{classifier}/{source}/{refiner}/{split}/masks",
    output:
        json="results/{dataset}/{classifier}/{source}/{refiner}/{split}/eval.json",
    params:
        data=lambda wc: split_params(wc.dataset, wc.split),
    threads: W.threads
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/{split}/eval_masks.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_masks.py"
