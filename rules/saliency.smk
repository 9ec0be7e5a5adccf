# Saliency (P-NOC, David et al., Sec. 4, 5, 7.2): a saliency source (`saliency.<name>`:
# C²AM / C²AM-H, the binary segmenter of the "R." column, or a folder of external maps) gives
# a saliency cache per split; Table 6 scores it with a classifier's priors or the ground
# truth; the `saliency` affinity-label style reads it (rules/refine.smk).


rule train_saliency:
    """Train a learned saliency source (C²AM, C²AM-H, the "R." saliency refiner)."""
    input:
        unpack(W.saliency_training_inputs),
    output:
        model="results/{dataset}/saliency/{saliency}/model.pt",
        metrics="results/{dataset}/saliency/{saliency}/metrics.csv",
        curve=report(
            "results/{dataset}/saliency/{saliency}/training_curve.png",
            caption="../docs/report/training_curve.rst",
            category="Training",
            subcategory="saliency",
        ),
    params:
        saliency=lambda wc: W.saliency_config(wc.saliency),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    wildcard_constraints:
        saliency=W.saliency_pattern(learned=True),
    threads: W.threads
    resources:
        **stage_resources("train_saliency"),
    log:
        "results/logs/{dataset}/saliency/{saliency}/train_saliency.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_saliency.py"


rule saliency_masks:
    """Pseudo-saliency masks (thresholded + CRF) a saliency refiner trains on."""
    input:
        dataset_marker,
        cache=W.saliency_masks_input,
    output:
        masks=directory("results/{dataset}/saliency/{saliency}/training_masks"),
    params:
        threshold=lambda wc: W.saliency_config(wc.saliency)["threshold"],
        crf=lambda wc: W.saliency_config(wc.saliency)["crf"],
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
    threads: W.threads
    log:
        "results/logs/{dataset}/saliency/{saliency}/saliency_masks.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/saliency_masks.py"


rule make_saliency:
    """The saliency cache of a split from any saliency source."""
    input:
        unpack(W.saliency_inputs),
    output:
        saliency="results/{dataset}/saliency/{saliency}/{split}/saliency.h5",
    params:
        saliency=lambda wc: W.saliency_config(wc.saliency),
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("make_saliency"),
    log:
        "results/logs/{dataset}/saliency/{saliency}/{split}/make_saliency.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/make_saliency.py"


rule eval_saliency:
    """P-NOC Table 6: a saliency cache with a classifier's priors ({priors} =
    classifier/source) or the ground truth ({priors} = gt), mIoU at the best threshold."""
    input:
        unpack(W.saliency_eval_inputs),
    output:
        json="results/{dataset}/saliency/{saliency}/{split}/eval/{priors}.json",
    params:
        thresholds=config["evaluation"]["saliency_thresholds"],
        data=lambda wc: split_params(wc.dataset, wc.split),
    log:
        "results/logs/{dataset}/saliency/{saliency}/{split}/eval_saliency_{priors}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_saliency.py"


rule saliency_figure:
    """A saliency source's maps on a few images (P-NOC Fig. 8)."""
    input:
        dataset_marker,
        saliency="results/{dataset}/saliency/{saliency}/{split}/saliency.h5",
        evaluation="results/{dataset}/saliency/{saliency}/{split}/eval/gt.json",
    output:
        png=report(
            "results/{dataset}/saliency/{saliency}/{split}/figure.png",
            caption="../docs/report/saliency_figure.rst",
            category="Saliency",
            labels={"saliency": "{saliency}", "split": "{split}"},
        ),
    params:
        data=lambda wc: split_params(wc.dataset, wc.split),
    log:
        "results/logs/{dataset}/saliency/{saliency}/{split}/saliency_figure.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/saliency_figure.py"
