# A synthetic benchmark (docs/synthetic.md), generated in VOC layout into the root of every
# `datasets` entry with a `generate` block (the full-size `synthetic`, the demo's `demo`).

GENERATED_ROOTS = [r for r in map(W.generated_root, config["datasets"]) if r]


rule synthetic:
    """Generate a synthetic benchmark (docs/synthetic.md) into its dataset's root."""
    output:
        meta="{root}/meta.json",
    wildcard_constraints:
        root="|".join(map(re.escape, GENERATED_ROOTS)) or "(?!)",
    params:
        root=lambda wc, output: os.path.dirname(output.meta),
        generate=lambda wc: W.generated_dataset(wc.root)["generate"],
    threads: W.threads
    log:
        "results/logs/generate/{root}.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/make_synthetic.py"


# Every split a target needs is checked before the first trained stage (train_classifier,
# train_segmentation depend on these reports): a missing or bad mask, an empty split list,
# named all at once — before any GPU job is queued. `files` (a stat fingerprint of the split's
# files) reruns the check, and everything after it, when the data change.
rule check_dataset:
    """Check every image of a split (labels, masks) before anything trains on it."""
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
