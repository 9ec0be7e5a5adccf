# Refinement: affinity labels -> IRN / AffinityNet -> random walk -> pseudo masks -> mask mIoU.
# Refiners are named under `refiners:` (method irn or affinitynet); they train on the affinity
# labels of the dataset's train_split and refine the CAM cache of any split.


rule affinity_labels:
    input:
        dataset_marker,
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
    output:
        labels="results/{dataset}/{classifier}/{source}/{split}/affinity_labels/{style}.h5",
    params:
        labels=lambda wc: affinity_label_config(wc.style),
        data=lambda wc: split_params(wc.dataset, wc.split),
    threads: config["runtime"]["workers"]
    resources:
        gpu=0,
        mem_mb=stage_resource("affinity_labels", "mem_mb", 8000),
        runtime=stage_resource("affinity_labels", "runtime", 120),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/affinity_labels_{style}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/affinity_labels.py"


rule train_irn:
    input:
        unpack(lambda wc: refiner_training_inputs(wc, "irn")),
    output:
        model="results/{dataset}/{classifier}/{source}/{refiner}/irn.pt",
    params:
        refiner=lambda wc: refiner_training_config(wc.refiner, "irn"),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    threads: config["runtime"]["workers"]
    resources:
        gpu=stage_resource("train_irn", "gpu", 1),
        mem_mb=stage_resource("train_irn", "mem_mb", 16000),
        runtime=stage_resource("train_irn", "runtime", 240),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/train_irn.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_refiner.py"


rule train_affinitynet:
    input:
        unpack(lambda wc: refiner_training_inputs(wc, "affinitynet")),
    output:
        model="results/{dataset}/{classifier}/{source}/{refiner}/affinitynet.pt",
    params:
        refiner=lambda wc: refiner_training_config(wc.refiner, "affinitynet"),
        data=lambda wc: dataset_params(wc.dataset, "train_split"),
        runtime=runtime_params(),
    threads: config["runtime"]["workers"]
    resources:
        gpu=stage_resource("train_affinitynet", "gpu", 1),
        mem_mb=stage_resource("train_affinitynet", "mem_mb", 16000),
        runtime=stage_resource("train_affinitynet", "runtime", 240),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/train_affinitynet.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/train_refiner.py"


rule random_walk:
    input:
        dataset_marker,
        model=refiner_model,
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
    output:
        masks=directory("results/{dataset}/{classifier}/{source}/{refiner}/{split}/masks"),
        scores="results/{dataset}/{classifier}/{source}/{refiner}/{split}/scores.h5",
    params:
        refiner=lambda wc: refiner_walk_config(wc.refiner),
        data=lambda wc: split_params(wc.dataset, wc.split),
        runtime=runtime_params(),
    threads: config["runtime"]["workers"]
    resources:
        gpu=stage_resource("random_walk", "gpu", 1),
        mem_mb=stage_resource("random_walk", "mem_mb", 8000),
        runtime=stage_resource("random_walk", "runtime", 120),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/{split}/random_walk.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/random_walk.py"


rule eval_masks:
    input:
        dataset_marker,
        masks="results/{dataset}/{classifier}/{source}/{refiner}/{split}/masks",
    output:
        json="results/{dataset}/{classifier}/{source}/{refiner}/{split}/eval.json",
    params:
        data=lambda wc: split_params(wc.dataset, wc.split),
    threads: config["runtime"]["workers"]
    log:
        "results/logs/{dataset}/{classifier}/{source}/{refiner}/{split}/eval_masks.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/eval_masks.py"
