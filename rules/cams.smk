# CAM sources (config `sources:`): each writes the standard HDF5 CAM cache (camflow/cache.py),
# so every evaluator, refiner and table reads any source.


rule make_cams:
    """CAM cache of a classifier's source (multi-scale + flip): results/{dataset}/{classifier}/{source}/{split}/cams.h5."""
    input:
        dataset_marker,
        checkpoint="results/{dataset}/{classifier}/classifier.pt",
    output:
        cache="results/{dataset}/{classifier}/{source}/{split}/cams.h5",
    params:
        source=lambda wc: source_config(wc.source),
        data=lambda wc: {**dataset_params(wc.dataset, "eval_split"), "split": wc.split},
        runtime=runtime_params(),
    threads: W.threads
    resources:
        **stage_resources("make_cams"),
    log:
        "results/logs/{dataset}/{classifier}/{source}/{split}/make_cams.log",
    conda:
        CONDA_ENV
    script:
        "../workflow_scripts/make_cams.py"
