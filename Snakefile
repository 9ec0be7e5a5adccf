"""camflow: weakly supervised semantic segmentation from CAM seeds.

`snakemake results/tables/cam_seeds.csv` rebuilds the CAM-seed table for the configured
dataset. docs/architecture.md maps every artifact to its rule.
"""

import os

from snakemake.utils import min_version, validate

min_version("9.0")


# Defaults ship beside the Snakefile; overlay your own with --configfile my.yaml.
configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "schemas/config.schema.yaml")


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    classifier="[A-Za-z0-9][A-Za-z0-9_.-]*",
    source="[A-Za-z0-9_-]+",
    split="[A-Za-z0-9_-]+",
    table="[A-Za-z0-9_-]+",


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/classifier.smk"
include: "rules/cams.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"


rule all:
    input:
        expand("results/tables/{table}.csv", table=config["tables"]),
    default_target: True
