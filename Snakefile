"""camflow: weakly supervised semantic segmentation from CAM seeds.

`snakemake results/synthetic/tables/cam_seeds.csv` rebuilds the CAM-seed table of the synthetic
benchmark (results/{dataset}/tables/ for any configured dataset). docs/architecture.md maps every
artifact to its rule.
"""

import os
import re

from snakemake.utils import min_version

min_version("9.0")


# Defaults ship beside the Snakefile; overlay your own with --configfile my.yaml.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"  # also registers Fig. 8's sweep points as GSLM configurations


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    classifier="[A-Za-z0-9][A-Za-z0-9_.-]*",
    source="[A-Za-z0-9_-]+(/stage[0-9]+)?",  # a GSLM stage is `{gslm}/stage{n}`
    split="[A-Za-z0-9_-]+",
    table="[A-Za-z0-9_-]+",
    style="[A-Za-z0-9_-]+",
    # only configured names, so that e.g. results/{dataset}/segmentation/... never parses
    # as a refiner's path
    refiner="|".join(map(re.escape, config["refiners"])),
    segmenter="|".join(map(re.escape, config["segmenters"])),
    gslm="|".join(map(re.escape, config["gslm"])),
    n="[0-9]+",
    masks="gt|[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+(/stage[0-9]+)?/[A-Za-z0-9_-]+",


include: "rules/data.smk"
include: "rules/classifier.smk"
include: "rules/cams.smk"
include: "rules/evaluate.smk"
include: "rules/refine.smk"
include: "rules/segmentation.smk"
include: "rules/gslm.smk"
include: "rules/tables.smk"


rule all:
    input:
        expand("results/{dataset}/tables/{table}.csv", dataset=config["dataset"],
               table=config["tables"]),
        expand("results/{dataset}/tables/{table}.png", dataset=config["dataset"],
               table=TABLES_WITH_FIGURES),
    default_target: True
