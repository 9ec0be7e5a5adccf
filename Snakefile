"""camflow: weakly supervised semantic segmentation from CAM seeds.

`snakemake` builds the tables of config `targets` (rule `all`); every paper table is a target
rule of its own name (`snakemake --list-target-rules`, `make tables`), and
`snakemake --report report.html` gathers the tables and figures built. docs/architecture.md
maps every artifact to its rule.
"""

import os
import re

from snakemake.utils import min_version

min_version("9.0")


# Defaults ship beside the Snakefile; overlay your own with --configfile my.yaml.
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "docs/report/workflow.rst"


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
    saliency="|".join(map(re.escape, config.get("saliency", {}))) or "(?!)",
    priors="gt|[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+",
    masks="gt|[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_-]+(/stage[0-9]+)?/[A-Za-z0-9_-]+",


include: "rules/data.smk"
include: "rules/classifier.smk"
include: "rules/cams.smk"
include: "rules/evaluate.smk"
include: "rules/refine.smk"
include: "rules/saliency.smk"
include: "rules/segmentation.smk"
include: "rules/gslm.smk"
include: "rules/tables.smk"


rule all:
    """The tables of config `targets` on config `dataset`, with their figures."""
    input:
        [f for table in config["targets"] for f in W.table_targets(table)],
    default_target: True
