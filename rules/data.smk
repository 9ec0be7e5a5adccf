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
