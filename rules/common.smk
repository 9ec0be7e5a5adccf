# Helpers shared by the rules: config lookups that become `params:` and dataset inputs.

import json
from pathlib import Path


wildcard_constraints:
    dataset="[A-Za-z0-9_.-]+",
    classifier="[A-Za-z0-9][A-Za-z0-9_.-]*",
    source="[A-Za-z0-9_-]+",
    split="[A-Za-z0-9_-]+",
    table="[A-Za-z0-9_-]+",


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


def dataset_params(name, split_key):
    """What a rule needs to open a dataset (reaches the rule through `params:`)."""
    ds = dataset_config(name)
    return {
        "name": name,
        "root": ds["root"],
        "split": ds[split_key],
        "cache_dir": f"results/{name}/labels",
    }


def dataset_marker(wildcards):
    """The synthetic benchmark is built by a rule; real datasets are read where they lie."""
    if wildcards.dataset == "synthetic":
        return f"{dataset_config('synthetic')['root']}/meta.json"
    return []


def rule_resources(rule_name, key, default):
    return config["resources"].get(rule_name, {}).get(key, default)


def runtime_params():
    """Settings that change numbers (device and AMP); worker counts do not and stay out."""
    return {"device": config["runtime"]["device"], "amp": config["runtime"]["amp"]}
