# The embedded synthetic benchmark (docs/synthetic.md), generated in VOC layout.


rule synthetic:
    output:
        meta=f"{dataset_config('synthetic')['root']}/meta.json",
    params:
        root=lambda wc, output: os.path.dirname(output.meta),
        generate=dataset_config("synthetic")["generate"],
    threads: W.threads
    log:
        "results/logs/synthetic/generate.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/make_synthetic.py"


# Every split a target needs is checked before the first trained stage (train_classifier,
# train_segmentation depend on these reports): a missing or bad mask, an empty split list,
# named all at once — before any GPU job is queued. `files` (a stat fingerprint of the split's
# files) reruns the check, and everything after it, when the data change.
rule check_dataset:
    input:
        dataset_marker,
    output:
        report="results/{dataset}/checks/{split}.json",
    params:
        data=lambda wc: split_params(wc.dataset, wc.split),
        files=lambda wc: W.dataset_fingerprint(wc.dataset, wc.split),
    log:
        "results/logs/{dataset}/checks/{split}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/check_dataset.py"
