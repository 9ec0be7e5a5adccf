# Helpers shared by the rule files, config lookups (passed as params) and dataset inputs.

import os
from pathlib import Path


CONDA_ENV = "../envs/camflow.yaml"


def config_error(key, message):
    raise ValueError(f"config key {key!r}: {message}")


def dataset_config(name):
    """The `datasets.<name>` block, with a clear error for an unconfigured name."""
    if name not in config["datasets"]:
        config_error(f"datasets.{name}", f"dataset {name!r} is not configured")
    return config["datasets"][name]


def classifier_config(name):
    if name not in config["classifiers"]:
        config_error(f"classifiers.{name}", f"no classifier named {name!r}")
    return config["classifiers"][name]


def source_config(name):
    """A CAM source's settings: its `sources.<name>` entry over the default TTA of `cams`."""
    if name not in config["sources"]:
        config_error(f"sources.{name}", f"no CAM source named {name!r}")
    return {**config["cams"], **config["sources"][name]}


def dataset_params(name, split_key):
    """What a stage needs to open a dataset; passed to it through `params:`."""
    ds = dataset_config(name)
    return {
        "name": name,
        "root": ds["root"],
        "split": ds[split_key],
        "cache_dir": f"results/{name}/labels",
    }


def split_params(dataset, split):
    """Dataset params for a stage that works on the split named by its wildcard."""
    return {**dataset_params(dataset, "eval_split"), "split": split}


def affinity_label_config(style):
    if style not in config["affinity_labels"]:
        config_error(f"affinity_labels.{style}", f"no affinity-label style {style!r}")
    return config["affinity_labels"][style]


def refiner_config(name, method=None):
    """A `refiners.<name>` block; with `method`, it must be of that method."""
    if name not in config["refiners"]:
        config_error(f"refiners.{name}", f"no refiner named {name!r}")
    cfg = config["refiners"][name]
    if method and cfg["method"] != method:
        config_error(f"refiners.{name}.method", f"is {cfg['method']!r}, not {method!r}")
    return cfg


def refiner_training_config(name, method):
    """What training uses: the refiner's block without its random-walk settings."""
    return {k: v for k, v in refiner_config(name, method).items() if k != "random_walk"}


def refiner_walk_config(name):
    """What the random walk uses: the method and its settings."""
    cfg = refiner_config(name)
    return {"method": cfg["method"], "random_walk": cfg["random_walk"]}


def refiner_training_inputs(wildcards, method):
    """A refiner trains on the affinity labels of the dataset's train split."""
    cfg = refiner_config(wildcards.refiner, method)
    split = dataset_config(wildcards.dataset)["train_split"]
    prefix = f"results/{wildcards.dataset}/{wildcards.classifier}/{wildcards.source}"
    return {
        "marker": dataset_marker(wildcards),
        "labels": f"{prefix}/{split}/affinity_labels/{cfg['labels']}.h5",
        "classifier": f"results/{wildcards.dataset}/{wildcards.classifier}/classifier.pt",
    }


def refiner_model(wildcards):
    cfg = refiner_config(wildcards.refiner)
    return (f"results/{wildcards.dataset}/{wildcards.classifier}/{wildcards.source}/"
            f"{wildcards.refiner}/{cfg['method']}.pt")


def segmenter_config(name):
    if name not in config["segmenters"]:
        config_error(f"segmenters.{name}", f"no segmenter named {name!r}")
    return config["segmenters"][name]


def segmentation_training_inputs(wildcards):
    """Pseudo masks of the dataset's train split, or nothing for the ground truth (gt)."""
    segmenter_config(wildcards.segmenter)
    inputs = {"marker": dataset_marker(wildcards)}
    if wildcards.masks != "gt":
        split = dataset_config(wildcards.dataset)["train_split"]
        inputs["masks"] = f"results/{wildcards.dataset}/{wildcards.masks}/{split}/masks"
    return inputs


def gslm_config(name):
    if name not in config["gslm"]:
        config_error(f"gslm.{name}", f"no GSLM configuration named {name!r}")
    return config["gslm"][name]


def gslm_stage(wildcards, minimum=1):
    """The stage number n of a GSLM path, checked against `gslm.<name>.stages`."""
    n, last = int(wildcards.n), gslm_config(wildcards.gslm)["stages"]
    if not minimum <= n <= last:
        config_error(f"gslm.{wildcards.gslm}.stages",
                     f"stage {n} requested; stages run {minimum}..{last}")
    return n


def first_source_path(dataset, classifier, first, split, name="cams.h5"):
    """Stage 1's CAM cache: a CAM source (`cam`), or a refiner's scores (`cam/irn_small`)."""
    if "/" in first:
        source, refiner = first.split("/", 1)
        refiner_config(refiner)
        file = "scores.h5" if name == "cams.h5" else name
        return f"results/{dataset}/{classifier}/{source}/{refiner}/{split}/{file}"
    source_config(first)
    return f"results/{dataset}/{classifier}/{first}/{split}/{name}"


def stage_cache_path(dataset, classifier, name, n, split):
    """The CAM cache of stage n of GSLM configuration `name` (stage 1: its first source)."""
    if n == 1:
        return first_source_path(dataset, classifier, gslm_config(name)["first_source"], split)
    return f"results/{dataset}/{classifier}/{name}/stage{n}/{split}/cams.h5"


def gslm_stage_files(wildcards, name):
    """`cams.h5` or `eval.json` of every stage of a GSLM configuration on the eval split."""
    dataset, classifier = wildcards.dataset, wildcards.classifier
    split = dataset_config(dataset)["eval_split"]
    last = gslm_config(wildcards.gslm)["stages"]
    if name == "eval.json":
        return [gslm_eval_path(classifier, wildcards.gslm, n, dataset) for n in range(1, last + 1)]
    return [stage_cache_path(dataset, classifier, wildcards.gslm, n, split)
            for n in range(1, last + 1)]


def gslm_stage_cache(wildcards):
    """The CAM cache whose Coarse Generation gives stage n's confidence CAM."""
    return stage_cache_path(wildcards.dataset, wildcards.classifier, wildcards.gslm,
                            gslm_stage(wildcards), wildcards.split)


def stage1_owner(name):
    """The configuration whose stage-1 confidence CAM `name` trains on: the first configured
    one with the same first source and Coarse Generation, the only things stage 1 depends
    on. Ablations and sweep points thus share the base's CRF work instead of redoing it."""
    cfg = gslm_config(name)
    key = (cfg["first_source"], cfg["coarse_generation"])
    return next(other for other, c in config["gslm"].items()
                if (c["first_source"], c["coarse_generation"]) == key)


def slm_training_inputs(wildcards):
    """Stage n >= 2 starts from stage n-1's weights (stage 1: the classifier) and learns from
    stage n-1's confidence CAM on the training split."""
    n = gslm_stage(wildcards, minimum=2)
    prefix = f"results/{wildcards.dataset}/{wildcards.classifier}"
    split = dataset_config(wildcards.dataset)["train_split"]
    previous = (f"{prefix}/classifier.pt" if n == 2
                else f"{prefix}/{wildcards.gslm}/stage{n - 1}/classifier.pt")
    owner = stage1_owner(wildcards.gslm) if n == 2 else wildcards.gslm
    confidence = f"{prefix}/{owner}/stage{n - 1}/{split}/confidence.h5"
    if gslm_config(wildcards.gslm)["coarse_generation"] == "none":  # ablation: N = the CAM
        confidence = stage_cache_path(wildcards.dataset, wildcards.classifier, wildcards.gslm,
                                      n - 1, split)
    return {"marker": dataset_marker(wildcards), "previous": previous, "confidence": confidence}


def _sweep_name(value):
    """A number as it appears in a sweep point's name: 0.05 -> 0p05 (paths take no dots)."""
    return f"{value:g}".replace(".", "p")


def gslm_sweep_points(spec):
    """The (θ_bg, θ_fg) and k points of `tables.gslm_fig8` (seed 000 Fig. 8), each as
    (sweep, value label, configuration name, its config, its new `affinity_labels` entry or
    None). A point equal to the base configuration is the base itself; the others are
    derived from it and run to `sweep_stage`, named with `.` written `p`."""
    base, stage = spec["base"], spec["sweep_stage"]
    cfg = gslm_config(base)
    if cfg["coarse_generation"] == "none":
        config_error("tables.gslm_fig8.base", f"{base!r} has no Coarse Generation to sweep")
    style = affinity_label_config(cfg["coarse_generation"])
    for bg, fg in spec["thresholds"]:
        if (bg, fg) == (style["bg_threshold"], style["fg_threshold"]):
            yield "thresholds", f"{bg:g}/{fg:g}", base, cfg, None
            continue
        suffix = f"bg{_sweep_name(bg)}_fg{_sweep_name(fg)}"
        yield ("thresholds", f"{bg:g}/{fg:g}", f"{base}_{suffix}",
               {**cfg, "coarse_generation": f"{cfg['coarse_generation']}_{suffix}",
                "stages": stage},
               {**style, "bg_threshold": bg, "fg_threshold": fg})
    for k in spec["k"]:
        if k == cfg["slm"]["k"]:
            yield "k", f"{k:g}", base, cfg, None
        else:
            yield ("k", f"{k:g}", f"{base}_k{_sweep_name(k)}",
                   {**cfg, "slm": {**cfg["slm"], "k": k}, "stages": stage}, None)


def add_gslm_sweeps():
    """Register the derived sweep points of `tables.gslm_fig8` in `config["gslm"]` (and
    their Coarse Generation in `affinity_labels`), so that each is an ordinary `{gslm}` with
    its own params. Called in the Snakefile before the wildcard constraints."""
    spec = config["tables"].get("gslm_fig8")
    if not spec:
        return
    derived = {}
    for _, _, name, cfg, labels in gslm_sweep_points(spec):
        if name != spec["base"]:
            derived[name] = cfg
        if labels:
            config["affinity_labels"][cfg["coarse_generation"]] = labels
    clash = sorted(set(derived) & set(config["gslm"]))
    if clash:
        config_error(f"gslm.{clash[0]}", "this name is reserved for a gslm_fig8 sweep point")
    config["gslm"].update(derived)


def gslm_fig8_variants(spec):
    """Per sweep of `tables.gslm_fig8`: [value label, gslm configuration, stage] per point;
    the iterations are stages of the base."""
    base, stage = spec["base"], spec["sweep_stage"]
    last = gslm_config(base)["stages"]
    if stage > last:
        config_error("tables.gslm_fig8.sweep_stage",
                     f"stage {stage} is past {base!r}'s last stage {last}")
    for it in spec["iterations"]:
        if not 0 <= it < last:
            config_error("tables.gslm_fig8.iterations",
                         f"{it} SLM iterations need stage {it + 1}; {base!r} has {last} stages")
    variants = {"thresholds": [], "k": []}
    for sweep, value, name, _, _ in gslm_sweep_points(spec):
        variants[sweep].append([value, name, stage])
    variants["iterations"] = [[str(it), base, it + 1] for it in spec["iterations"]]
    return variants


def gslm_modules(name):
    """Which of GSLM's parts a configuration uses (seed 000 Table 5's columns)."""
    cfg = gslm_config(name)
    return {"CR": cfg["coarse_generation"] != "none",
            "SR": cfg["slm"].get("seed_reactivation", True),
            "L_cls": cfg["slm"].get("classification_loss", True)}


def gslm_eval_path(classifier, name, n, dataset=None):
    """Evaluation of stage n of GSLM configuration `name` (stage 1: its first source)."""
    dataset = dataset or config["dataset"]
    split = dataset_config(dataset)["eval_split"]
    cfg = gslm_config(name)
    if n == 1:
        return first_source_path(dataset, classifier, cfg["first_source"], split, "eval.json")
    return f"results/{dataset}/{classifier}/{name}/stage{n}/{split}/eval.json"


def train_data_params(dataset, classifier):
    """Training data of a classifier: the dataset's train split unless the classifier names one."""
    data = dataset_params(dataset, "train_split")
    split = classifier_config(classifier).get("train_split")
    return {**data, "split": split} if split else data


def dataset_marker(wildcards):
    """The synthetic benchmark is built by a rule; real datasets are read where they lie."""
    if wildcards.dataset == "synthetic":
        return f"{dataset_config('synthetic')['root']}/meta.json"
    return []


def stage_resource(stage, key, default):
    return config["resources"].get(stage, {}).get(key, default)


def runtime_params():
    """Settings that change numbers (device and AMP); worker counts do not and stay out."""
    return {"device": config["runtime"]["device"], "amp": config["runtime"]["amp"]}


# Tables: a new table registers the function listing its inputs here.


def eval_path(classifier, source, dataset=None, split=None):
    dataset = dataset or config["dataset"]
    split = split or dataset_config(dataset)["eval_split"]
    classifier_config(classifier)
    return f"results/{dataset}/{classifier}/{source}/{split}/eval.json"


def cam_seeds_inputs(spec):
    return [eval_path(name, spec["source"]) for name in spec["rows"]]


def source_table_inputs(spec):
    """One classifier, one row per CAM source."""
    for name in spec["rows"]:
        source_config(name)
    return [eval_path(spec["classifier"], name) for name in spec["rows"]]


def grid_table_inputs(spec):
    """Rows of classifiers × columns of CAM sources, row-major."""
    for name in spec["sources"]:
        source_config(name)
    return [eval_path(c, s) for c in spec["rows"] for s in spec["sources"]]


def base_pipeline_inputs(spec):
    """Per row (classifier): seeds, IRN masks, AffinityNet masks, DeepLab on the chosen
    refiner's masks, DeepLab on the ground truth."""
    dataset = config["dataset"]
    eval_split = dataset_config(dataset)["eval_split"]
    val = dataset_config(dataset).get("val_split", "val")
    refiner_config(spec["irn"], "irn")
    refiner_config(spec["affinitynet"], "affinitynet")
    refiner_config(spec["segmentation_masks"])
    segmenter_config(spec["segmenter"])
    seg = f"results/{dataset}/segmentation/{spec['segmenter']}"
    paths = []
    for name in spec["rows"]:
        prefix = f"results/{dataset}/{name}/{spec['source']}"
        paths += [
            eval_path(name, spec["source"]),
            f"{prefix}/{spec['irn']}/{eval_split}/eval.json",
            f"{prefix}/{spec['affinitynet']}/{eval_split}/eval.json",
            f"{seg}/{name}/{spec['source']}/{spec['segmentation_masks']}/{val}/eval.json",
            f"{seg}/gt/{val}/eval.json",
        ]
    return paths


def gslm_stages_inputs(spec):
    """Every stage of every GSLM configuration in `spec["rows"]` (variants), in order."""
    return [gslm_eval_path(spec["classifier"], name, n) for name in spec["rows"]
            for n in range(1, gslm_config(name)["stages"] + 1)]


def gslm_table1_inputs(spec):
    """CAM: seeds (+CRF); IRN: the refiner's masks of CAM; then per GSLM configuration its
    last stage's seeds and the refiner's masks of that stage."""
    dataset, c = config["dataset"], spec["classifier"]
    split = dataset_config(dataset)["eval_split"]
    refiner_config(spec["refiner"])
    paths = [eval_path(c, "cam"), f"results/{dataset}/{c}/cam/{spec['refiner']}/{split}/eval.json"]
    for name in spec["rows"]:
        last = gslm_config(name)["stages"]
        paths += [gslm_eval_path(c, name, last),
                  f"results/{dataset}/{c}/{name}/stage{last}/{spec['refiner']}/{split}/eval.json"]
    return paths


def gslm_fig8_inputs(spec):
    """Every sweep point's evaluation, sweeps in the order thresholds, k, iterations."""
    c = spec["classifier"]
    return [gslm_eval_path(c, name, stage) for points in gslm_fig8_variants(spec).values()
            for _, name, stage in points]


def gslm_table4_inputs(spec):
    """Per GSLM configuration: its first source (stage 1) and its last stage."""
    c = spec["classifier"]
    return [gslm_eval_path(c, name, n) for name in spec["rows"]
            for n in (1, gslm_config(name)["stages"])]


def gslm_table5_inputs(spec):
    """In the paper's order: the baseline (stage 1 of the full GSLM), the last stage of each
    ablation, the full GSLM without iterations (its stage 2) and with them (its last stage)."""
    c, full = spec["classifier"], spec["full"]
    paths = [gslm_eval_path(c, full, 1)]
    paths += [gslm_eval_path(c, name, gslm_config(name)["stages"]) for name in spec["rows"]]
    return paths + [gslm_eval_path(c, full, 2), gslm_eval_path(c, full, gslm_config(full)["stages"])]


TABLE_INPUTS = {
    "gslm_fig5": gslm_stages_inputs,
    "gslm_fig8": gslm_fig8_inputs,
    "gslm_table1": gslm_table1_inputs,
    "gslm_table4": gslm_table4_inputs,
    "gslm_table5": gslm_table5_inputs,
    "base_pipeline": base_pipeline_inputs,
    "cam_seeds": cam_seeds_inputs,
    "fullcam_table2": source_table_inputs,
    "fullcam_table3": source_table_inputs,
    "fullcam_table4": source_table_inputs,
    "fullcam_table5": grid_table_inputs,
}


def table_spec(name):
    if name not in config["tables"] or name not in TABLE_INPUTS:
        config_error(f"tables.{name}", f"unknown table {name!r}; known: {sorted(TABLE_INPUTS)}")
    spec = config["tables"][name]
    if name == "gslm_fig8":
        return {**spec, "variants": gslm_fig8_variants(spec)}
    if name.startswith("gslm_"):  # the builders need each configuration's stages and source
        names = spec["rows"] + ([spec["full"]] if "full" in spec else [])
        spec = {**spec, "stages": {g: gslm_config(g)["stages"] for g in names},
                "first_source": {g: gslm_config(g)["first_source"] for g in names},
                "modules": {g: gslm_modules(g) for g in names}}
    return spec
