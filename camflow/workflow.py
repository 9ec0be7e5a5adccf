"""The workflow's glue, testable without Snakemake: config accessors (each a clear error for
an unknown name), the path grammar of ``results/``, GSLM stage planning and table inputs.

``rules/common.smk`` builds one :class:`Workflow` over the validated config; the rules call
its methods for their ``input:`` and ``params:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from camflow.io import CamflowInputError

if TYPE_CHECKING:
    from camflow.tables import PaperTable

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# the stages with cluster resources (`resources.<stage>`); rules name theirs
STAGES = {
    "train_classifier",
    "make_cams",
    "eval_cams",
    "affinity_labels",
    "train_refiner",
    "refine",
    "train_slm",
    "train_segmentation",
    "eval_segmentation",
    "export_submission",
    "train_saliency",
    "make_saliency",
}


def config_error(key: str, message: str) -> NoReturn:
    raise CamflowInputError(f"config key {key!r}: {message}")


class Workflow:
    """Accessors over a validated config (see module doc).  ``add_gslm_sweeps`` registers
    Fig. 8's sweep points as GSLM configurations; ``check`` validates what the static schema
    cannot (methods' own keys, resources)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.schema = yaml.safe_load(SCHEMA.read_text())
        self._validated: dict[str, dict[str, Any]] = {}
        self.replicates: dict[str, list[str]] = {}

    def check(self) -> None:
        """Validate the config against the static schema (in place, defaults filled), register
        Fig. 8's sweep points, then validate what the static schema cannot: the
        registered names (datasets, CAM sources, refiners), every classifier and SLM against
        its method's schema, and the names under ``resources``.  Called once when the
        Snakefile is parsed."""
        from camflow.data import DATASETS
        from camflow.schema import validate_config

        validate_config(self.config, self.schema)
        self.add_replicates()
        self.add_gslm_sweeps()
        for name in self.config["datasets"]:
            fmt = self.dataset_format(name)
            ds = self.config["datasets"][name]
            DATASETS.get(fmt, f"datasets.{name}.format" if "format" in ds else f"datasets.{name}")
            if "generate" in ds and fmt != "synthetic":
                config_error(f"datasets.{name}.generate",
                             f"only a synthetic benchmark is generated, not format {fmt!r}")
        for name in self.config["sources"]:
            self.source_config(name)
        for name in self.config["classifiers"]:
            self.input_classifiers(name)
        for name in self.config["gslm"]:
            self.slm_config(name)
        for name in self.config["refiners"]:
            self.refiner_config(name)
        for name in self.config["saliency"]:
            self.saliency_config(name)
        for name in self.config["affinity_labels"]:
            self.affinity_label_saliency(name)
        self.check_resources(STAGES)
        for name in self.config["targets"]:
            if name not in self.config["tables"]:
                config_error("targets", f"{name!r} is not a table under `tables`")

    def dataset_config(self, name: str) -> dict[str, Any]:
        """The `datasets.<name>` block, with a clear error for an unconfigured name."""
        if name not in self.config["datasets"]:
            config_error(f"datasets.{name}", f"dataset {name!r} is not configured")
        return self.config["datasets"][name]

    def dataset_format(self, name: str) -> str:
        """The registered dataset that reads ``datasets.<name>``: its ``format``, or the name."""
        return self.dataset_config(name).get("format", name)

    def generated_root(self, name: str) -> str | None:
        """The root of a dataset the ``synthetic`` rule generates, None for one on disk."""
        ds = self.dataset_config(name)
        return ds["root"] if "generate" in ds else None

    def generated_dataset(self, root: str) -> dict[str, Any]:
        """The ``datasets`` entry generated into ``root`` (the ``synthetic`` rule's params)."""
        for name in self.config["datasets"]:
            if self.generated_root(name) == root:
                return self.dataset_config(name)
        config_error("datasets", f"no dataset with `generate` has root {root!r}")

    def classifier_config(self, name: str) -> dict[str, Any]:
        """``classifiers.<name>`` validated against the schema of its method (default
        ``cam``), defaults filled in."""
        from camflow.methods.base import method_config

        key = f"classifiers.{name}"
        if key in self._validated:
            return self._validated[key]
        if name not in self.config["classifiers"]:
            config_error(key, f"no classifier named {name!r}")
        defs = self.schema["$defs"]
        self._validated[key] = method_config(
            self.config["classifiers"][name], key, defs["classifier"], defs
        )
        return self._validated[key]

    def add_replicates(self) -> None:
        """Expand each classifier's ``replicates`` (a count n: seeds s, s+1, …, s+n−1 from its
        ``seed`` s; or a list of seeds) into classifiers of their own, each a separate
        training job: the first seed keeps the name, seed t is ``<name>_seed<t>`` (P-NOC
        (David et al.) Sec. 6.1 averages three runs per strategy).  Called before any
        classifier is validated."""
        classifiers = self.config["classifiers"]
        for name in list(classifiers):
            cfg = classifiers[name]
            spec = cfg.pop("replicates", None)
            if spec is None:
                self.replicates[name] = [name]
                continue
            key = f"classifiers.{name}.replicates"
            seed = int(cfg.get("seed", 0))
            if isinstance(spec, bool) or not (
                    (isinstance(spec, int) and spec >= 1)
                    or (isinstance(spec, list) and spec
                        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                for t in spec) and len(set(spec)) == len(spec))):
                config_error(key, f"{spec!r}: give a count >= 1 or a list of distinct seeds")
            seeds = list(range(seed, seed + spec)) if isinstance(spec, int) else spec
            names = [name] + [f"{name}_seed{t}" for t in seeds[1:]]
            for derived, t in zip(names, seeds, strict=True):
                if derived != name and derived in classifiers:
                    config_error(f"classifiers.{derived}",
                                 f"this name is reserved for a replicate of {name!r}")
                classifiers[derived] = {**cfg, "seed": t}
            self.replicates[name] = names

    def replicate_names(self, name: str) -> list[str]:
        """The classifiers that replicate ``name`` (itself first; just it without
        ``replicates``)."""
        if name not in self.config["classifiers"]:
            config_error(f"classifiers.{name}", f"no classifier named {name!r}")
        return self.replicates.get(name, [name])

    def input_classifiers(self, name: str) -> dict[str, str]:
        """The classifiers that training classifier ``name`` reads, by input name (its
        method's ``input_classifiers``, e.g. OC-CSE's ``oc``), each checked to exist and not
        to lead back to ``name``."""
        from camflow.methods.base import method_class

        cfg = self.classifier_config(name)
        inputs = method_class(cfg["method"]).input_classifiers(cfg)
        for key, other in inputs.items():
            if other not in self.config["classifiers"]:
                config_error(f"classifiers.{name}.{key}", f"no classifier named {other!r}")
            todo, seen = [other], set()
            while todo:  # everything `other` needs, transitively, must not need `name`
                current = todo.pop()
                if current == name:
                    config_error(f"classifiers.{name}.{key}",
                                 f"{other!r} needs {name!r} to be trained first (a cycle)")
                if current not in seen and current in self.config["classifiers"]:
                    seen.add(current)
                    c = self.classifier_config(current)
                    todo += method_class(c["method"]).input_classifiers(c).values()
        return inputs

    def classifier_pattern(self, keep_epochs: bool) -> str:
        """The ``{classifier}`` names of the classifiers with (or without) ``keep_epochs``, as a
        wildcard regex: the two training rules split the classifiers between them."""
        names = [n for n in self.config["classifiers"]
                 if bool(self.config["classifiers"][n].get("keep_epochs")) == keep_epochs]
        return "|".join(map(re.escape, names)) or "(?!)"

    def classifier_training_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Inputs of ``train_classifier``: the dataset's marker and checks, and the
        checkpoints of the classifiers its method reads."""
        prefix = f"results/{wildcards.dataset}"
        return {"marker": self.dataset_marker(wildcards),
                "checks": self.dataset_checks(wildcards),
                **{key: f"{prefix}/{other}/classifier.pt"
                   for key, other in self.input_classifiers(wildcards.classifier).items()}}

    def slm_config(self, name: str) -> dict[str, Any]:
        """The SLM of GSLM configuration ``name``: method ``slm`` with its block."""
        from camflow.methods.base import method_config

        defs = self.schema["$defs"]
        return method_config(
            {**self.gslm_config(name)["slm"], "method": "slm"},
            f"gslm.{name}.slm",
            defs["training"],
            defs,
        )

    def source_config(self, name: str) -> dict[str, Any]:
        """A CAM source's settings: its ``sources.<name>`` entry over the default TTA of
        ``cams``, validated against the source schema and its method's own."""
        from camflow.methods.sources import source_schema
        from camflow.schema import extend, validate_block

        key = f"sources.{name}"
        if key in self._validated:
            return self._validated[key]
        if name not in self.config["sources"]:
            config_error(key, f"no CAM source named {name!r}")
        cfg = {**self.config["cams"], **self.config["sources"][name]}
        defs = self.schema["$defs"]
        own = source_schema(cfg.get("method"), f"{key}.method")
        self._validated[key] = validate_block(cfg, key, extend(defs["source"], own), defs)
        return self._validated[key]

    def dataset_params(self, name: str, split_key: str) -> dict[str, Any]:
        """What a stage needs to open a dataset; passed to it through `params:`."""
        ds = self.dataset_config(name)
        fmt = self.dataset_format(name)
        return {
            "name": name,
            **({"format": fmt} if fmt != name else {}),  # as before for a dataset named so
            "root": ds["root"],
            "split": ds[split_key],
            "cache_dir": f"results/{name}/labels",
        }

    def split_params(self, dataset: str, split: str) -> dict[str, Any]:
        """Dataset params for a stage that works on the split named by its wildcard."""
        return {**self.dataset_params(dataset, "eval_split"), "split": split}

    def affinity_label_config(self, style: str) -> dict[str, Any]:
        if style not in self.config["affinity_labels"]:
            config_error(f"affinity_labels.{style}", f"no affinity-label style {style!r}")
        return self.config["affinity_labels"][style]

    def affinity_label_saliency(self, style: str) -> str | None:
        """The saliency source a ``saliency`` style reads (checked to be configured)."""
        cfg = self.affinity_label_config(style)
        if cfg["method"] != "saliency":
            return None
        self.saliency_config(cfg["saliency"], f"affinity_labels.{style}.saliency")
        return cfg["saliency"]

    def affinity_label_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The CAM cache, and for a ``saliency`` style the same split's saliency cache."""
        prefix = f"results/{wildcards.dataset}"
        inputs = {"marker": self.dataset_marker(wildcards),
                  "cache": f"{prefix}/{wildcards.classifier}/{wildcards.source}/"
                           f"{wildcards.split}/cams.h5"}
        saliency = self.affinity_label_saliency(wildcards.style)
        if saliency is not None:
            inputs["saliency"] = f"{prefix}/saliency/{saliency}/{wildcards.split}/saliency.h5"
        return inputs

    # Saliency (P-NOC's C²AM-H and the "R." refiner): results/{dataset}/saliency/{saliency}/

    def saliency_config(self, name: str, key: str | None = None) -> dict[str, Any]:
        """A ``saliency.<name>`` block validated against its method's schema, defaults filled
        in; a ``refined`` one's ``segmenter`` name replaced by that segmenter's block and its
        ``of`` checked; a ``c2am`` one's ``priors`` classifier checked."""
        from camflow.saliency import saliency_method
        from camflow.schema import extend, validate_block

        key = key or f"saliency.{name}"
        cache_key = f"saliency.{name}"
        if cache_key in self._validated:
            return self._validated[cache_key]
        if name not in self.config["saliency"]:
            config_error(key, f"no saliency source named {name!r}")
        cfg = self.config["saliency"][name]
        cls = saliency_method(cfg.get("method"), f"{cache_key}.method")
        defs = self.schema["$defs"]
        cfg = validate_block(cfg, cache_key, extend(defs["saliency"], cls.schema), defs)
        if "priors" in cfg:
            self.classifier_config(cfg["priors"].split("/")[0])
            self.source_config(cfg["priors"].split("/")[1])
        if "of" in cfg:
            if cfg["of"] == name:
                config_error(f"{cache_key}.of", "a saliency source cannot refine itself")
            self.saliency_config(cfg["of"], f"{cache_key}.of")
        if isinstance(cfg.get("segmenter"), str):
            cfg["segmenter"] = self.segmenter_config(cfg["segmenter"])
        self._validated[cache_key] = cfg
        return cfg

    def saliency_pattern(self, learned: bool) -> str:
        """The ``{saliency}`` names whose method is (not) learned, as a wildcard regex."""
        from camflow.saliency import saliency_method

        names = [n for n in self.config["saliency"]
                 if saliency_method(self.saliency_config(n)["method"]).learned == learned]
        return "|".join(map(re.escape, names)) or "(?!)"

    def saliency_training_inputs(self, wildcards: Any) -> dict[str, Any]:
        from camflow.saliency import saliency_method

        cfg = self.saliency_config(wildcards.saliency)
        split = self.dataset_config(wildcards.dataset)["train_split"]
        own = saliency_method(cfg["method"]).training_inputs(
            cfg, f"results/{wildcards.dataset}", split, wildcards.saliency)
        return {"marker": self.dataset_marker(wildcards),
                "checks": self.dataset_checks(wildcards), **own}

    def saliency_inputs(self, wildcards: Any) -> dict[str, Any]:
        """What ``make_saliency`` reads: the trained model (learned methods) and the method's
        own inputs."""
        from camflow.saliency import saliency_method

        cfg = self.saliency_config(wildcards.saliency)
        cls = saliency_method(cfg["method"])
        prefix = f"results/{wildcards.dataset}"
        split = self.dataset_config(wildcards.dataset)["train_split"]
        inputs = {"marker": self.dataset_marker(wildcards),
                  **cls.inference_inputs(cfg, prefix, split, wildcards.saliency)}
        if cls.learned:
            inputs["model"] = f"{prefix}/saliency/{wildcards.saliency}/model.pt"
        return inputs

    def saliency_masks_input(self, wildcards: Any) -> str:
        """The train split's saliency cache of the source a ``refined`` one refines."""
        cfg = self.saliency_config(wildcards.saliency)
        if "of" not in cfg:
            config_error(f"saliency.{wildcards.saliency}", "only a refined saliency source "
                         "trains on pseudo-saliency masks")
        split = self.dataset_config(wildcards.dataset)["train_split"]
        return f"results/{wildcards.dataset}/saliency/{cfg['of']}/{split}/saliency.h5"

    def saliency_eval_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The saliency cache and, unless the priors are the ground truth (``gt``), the CAM
        cache of ``{priors}`` = ``classifier/source`` on the same split."""
        prefix = f"results/{wildcards.dataset}"
        self.saliency_config(wildcards.saliency)
        inputs = {"marker": self.dataset_marker(wildcards),
                  "saliency": f"{prefix}/saliency/{wildcards.saliency}/{wildcards.split}/"
                              "saliency.h5"}
        if wildcards.priors != "gt":
            classifier, source = wildcards.priors.split("/")
            self.classifier_config(classifier)
            inputs["priors"] = f"{prefix}/{classifier}/{source}/{wildcards.split}/cams.h5"
        return inputs

    def saliency_eval_path(self, saliency: str, priors: str, dataset: str,
                           split: str | None = None) -> str:
        """Where ``eval_saliency`` writes the score of ``saliency`` with ``priors``
        (``classifier/source`` or ``gt``) on ``split`` (default: the seeds' split)."""
        split = split or self.dataset_config(dataset)["eval_split"]
        return f"results/{dataset}/saliency/{saliency}/{split}/eval/{priors}.json"

    def refiner_config(self, name: str) -> dict[str, Any]:
        """A ``refiners.<name>`` block (its ``method`` a registered refiner) validated against
        the refiner schema (+ the learned one's) and the refiner's own, defaults filled in."""
        from camflow.refine.refiners import refiner_class
        from camflow.schema import extend, validate_block

        key = f"refiners.{name}"
        if key in self._validated:
            return self._validated[key]
        if name not in self.config["refiners"]:
            config_error(key, f"no refiner named {name!r}")
        cfg = self.config["refiners"][name]
        cls = refiner_class(cfg.get("method"), f"{key}.method")
        defs = self.schema["$defs"]
        schema = defs["refiner"]
        if cls.learned:
            schema = extend(schema, defs["learned_refiner"])
        self._validated[key] = validate_block(cfg, key, extend(schema, cls.schema), defs)
        return self._validated[key]

    def refiner_training_config(self, name: str) -> dict[str, Any]:
        """What training uses: the refiner's block without its inference settings."""
        from camflow.refine.refiners import refiner_class

        cfg = self.refiner_config(name)
        cls = refiner_class(cfg["method"])
        if not cls.learned:
            config_error(f"refiners.{name}.method", f"refiner {cfg['method']!r} is not trained")
        return {k: v for k, v in cfg.items() if k not in cls.settings_keys}

    def refiner_inference_config(self, name: str) -> dict[str, Any]:
        """What refining uses: the method and its inference settings."""
        from camflow.refine.refiners import refiner_class

        cfg = self.refiner_config(name)
        cls = refiner_class(cfg["method"])
        return {"method": cfg["method"], "settings": cls.settings(cfg)}

    def refiner_training_inputs(self, wildcards: Any) -> dict[str, Any]:
        """A learned refiner trains on the affinity labels of the dataset's train split."""
        cfg = self.refiner_training_config(wildcards.refiner)
        split = self.dataset_config(wildcards.dataset)["train_split"]
        prefix = f"results/{wildcards.dataset}/{wildcards.classifier}/{wildcards.source}"
        return {
            "marker": self.dataset_marker(wildcards),
            "labels": f"{prefix}/{split}/affinity_labels/{cfg['labels']}.h5",
            "classifier": f"results/{wildcards.dataset}/{wildcards.classifier}/classifier.pt",
        }

    def refine_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The CAM cache; a learned refiner's network; the seed evaluation of the source when
        a threshold is ``best``."""
        from camflow.refine.refiners import refiner_class

        cfg = self.refiner_config(wildcards.refiner)
        prefix = f"results/{wildcards.dataset}/{wildcards.classifier}/{wildcards.source}"
        inputs = {
            "marker": self.dataset_marker(wildcards),
            "cache": f"{prefix}/{wildcards.split}/cams.h5",
        }
        if refiner_class(cfg["method"]).learned:
            inputs["model"] = f"{prefix}/{wildcards.refiner}/model.pt"
        if cfg.get("threshold") == "best":
            inputs["seed_eval"] = f"{prefix}/{wildcards.split}/eval.json"
        return inputs

    def segmenter_config(self, name: str) -> dict[str, Any]:
        if name not in self.config["segmenters"]:
            config_error(f"segmenters.{name}", f"no segmenter named {name!r}")
        return self.config["segmenters"][name]

    def check_masks(self, masks: str, key: str) -> str:
        """A pseudo-mask set that trains a segmenter — ``gt``, or
        ``{classifier}/{source}/{refiner}`` with ``{source}`` a CAM source, a GSLM stage
        ``{gslm}/stage{n}`` or a GSLM configuration (its last stage) — checked name by name
        against the config (``key`` names it); returned with the stage spelled out."""
        if masks == "gt":
            return masks
        parts = masks.split("/")
        if len(parts) not in (3, 4) or (len(parts) == 4
                                        and not re.fullmatch(r"stage[0-9]+", parts[2])):
            config_error(key, f"{masks!r} is neither gt nor classifier/source/refiner "
                              "(source: a CAM source, a GSLM configuration or gslm/stageN)")
        self.classifier_config(parts[0])
        self.refiner_config(parts[-1])
        if len(parts) == 3 and parts[1] not in self.config["sources"] \
                and parts[1] in self.config["gslm"]:
            parts.insert(2, f"stage{self.gslm_config(parts[1])['stages']}")
        if len(parts) == 3:
            self.source_config(parts[1])
        else:
            n, last = int(parts[2][5:]), self.gslm_config(parts[1])["stages"]
            if not 2 <= n <= last:
                config_error(key, f"{masks!r}: GSLM {parts[1]!r} has stages 2..{last}")
        return "/".join(parts)

    def segmentation_training_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Pseudo masks of the dataset's train split, or nothing for the ground truth (gt)."""
        self.segmenter_config(wildcards.segmenter)
        inputs = {"marker": self.dataset_marker(wildcards),
                  "checks": self.dataset_checks(wildcards)}
        if wildcards.masks != "gt":
            split = self.dataset_config(wildcards.dataset)["train_split"]
            inputs["masks"] = f"results/{wildcards.dataset}/{wildcards.masks}/{split}/masks"
        return inputs

    def gslm_config(self, name: str) -> dict[str, Any]:
        if name not in self.config["gslm"]:
            config_error(f"gslm.{name}", f"no GSLM configuration named {name!r}")
        return self.config["gslm"][name]

    def gslm_stage(self, wildcards: Any, minimum: int = 1) -> int:
        """The stage number n of a GSLM path, checked against `gslm.<name>.stages`."""
        n, last = int(wildcards.n), self.gslm_config(wildcards.gslm)["stages"]
        if not minimum <= n <= last:
            config_error(
                f"gslm.{wildcards.gslm}.stages",
                f"stage {n} requested; stages run {minimum}..{last}",
            )
        return n

    def first_source_path(self, dataset: str, classifier: str, first: str, split: str,
                          name: str = "cams.h5") -> str:
        """Stage 1's CAM cache: a CAM source (`cam`), or a refiner's scores (`cam/irn_small`)."""
        if "/" in first:
            source, refiner = first.split("/", 1)
            self.refiner_config(refiner)
            file = "scores.h5" if name == "cams.h5" else name
            return f"results/{dataset}/{classifier}/{source}/{refiner}/{split}/{file}"
        self.source_config(first)
        return f"results/{dataset}/{classifier}/{first}/{split}/{name}"

    def stage_cache_path(self, dataset: str, classifier: str, name: str, n: int,
                         split: str) -> str:
        """The CAM cache of stage n of GSLM configuration `name` (stage 1: its first source)."""
        if n == 1:
            return self.first_source_path(
                dataset, classifier, self.gslm_config(name)["first_source"], split
            )
        return f"results/{dataset}/{classifier}/{name}/stage{n}/{split}/cams.h5"

    def gslm_stage_files(self, wildcards: Any, name: str) -> list[str]:
        """`cams.h5` or `eval.json` of every stage of a GSLM configuration on the eval split."""
        dataset, classifier = wildcards.dataset, wildcards.classifier
        split = self.dataset_config(dataset)["eval_split"]
        last = self.gslm_config(wildcards.gslm)["stages"]
        if name == "eval.json":
            return [
                self.gslm_eval_path(classifier, wildcards.gslm, n, dataset)
                for n in range(1, last + 1)
            ]
        return [
            self.stage_cache_path(dataset, classifier, wildcards.gslm, n, split)
            for n in range(1, last + 1)
        ]

    def gslm_stage_cache(self, wildcards: Any) -> str:
        """The CAM cache whose Coarse Generation gives stage n's confidence CAM."""
        return self.stage_cache_path(
            wildcards.dataset,
            wildcards.classifier,
            wildcards.gslm,
            self.gslm_stage(wildcards),
            wildcards.split,
        )

    def stage1_owner(self, name: str) -> str:
        """The configuration whose stage-1 confidence CAM `name` trains on: the first configured
        one with the same first source and Coarse Generation, the only things stage 1 depends
        on. Ablations and sweep points thus share the base's CRF work instead of redoing it."""
        cfg = self.gslm_config(name)
        key = (cfg["first_source"], cfg["coarse_generation"])
        return next(
            other
            for other, c in self.config["gslm"].items()
            if (c["first_source"], c["coarse_generation"]) == key
        )

    def slm_training_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Stage n >= 2 starts from stage n-1's weights (stage 1: the classifier) and learns from
        stage n-1's confidence CAM on the training split."""
        n = self.gslm_stage(wildcards, minimum=2)
        prefix = f"results/{wildcards.dataset}/{wildcards.classifier}"
        split = self.dataset_config(wildcards.dataset)["train_split"]
        previous = (
            f"{prefix}/classifier.pt"
            if n == 2
            else f"{prefix}/{wildcards.gslm}/stage{n - 1}/classifier.pt"
        )
        owner = self.stage1_owner(wildcards.gslm) if n == 2 else wildcards.gslm
        confidence = f"{prefix}/{owner}/stage{n - 1}/{split}/confidence.h5"
        if self.gslm_config(wildcards.gslm)["coarse_generation"] == "none":  # ablation: N = the CAM
            confidence = self.stage_cache_path(
                wildcards.dataset, wildcards.classifier, wildcards.gslm, n - 1, split
            )
        return {
            "marker": self.dataset_marker(wildcards),
            "previous": previous,
            "confidence": confidence,
        }

    def _sweep_name(self, value: float) -> str:
        """A number as it appears in a sweep point's name: 0.05 -> 0p05 (paths take no dots)."""
        return f"{value:g}".replace(".", "p")

    def gslm_sweep_points(self, spec: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """The (θ_bg, θ_fg) and k points of `tables.gslm_fig8` (GSLM, Mai et al., Fig. 8), each as
        (sweep, value label, configuration name, its config, its new `affinity_labels` entry or
        None). A point equal to the base configuration is the base itself; the others are
        derived from it and run to `sweep_stage`, named with `.` written `p`."""
        base, stage = spec["base"], spec["sweep_stage"]
        cfg = self.gslm_config(base)
        if cfg["coarse_generation"] == "none":
            config_error("tables.gslm_fig8.base", f"{base!r} has no Coarse Generation to sweep")
        style = self.affinity_label_config(cfg["coarse_generation"])
        for bg, fg in spec["thresholds"]:
            if (bg, fg) == (style["bg_threshold"], style["fg_threshold"]):
                yield "thresholds", f"{bg:g}/{fg:g}", base, cfg, None
                continue
            suffix = f"bg{self._sweep_name(bg)}_fg{self._sweep_name(fg)}"
            yield (
                "thresholds",
                f"{bg:g}/{fg:g}",
                f"{base}_{suffix}",
                {
                    **cfg,
                    "coarse_generation": f"{cfg['coarse_generation']}_{suffix}",
                    "stages": stage,
                },
                {**style, "bg_threshold": bg, "fg_threshold": fg},
            )
        for k in spec["k"]:
            if k == cfg["slm"]["k"]:
                yield "k", f"{k:g}", base, cfg, None
            else:
                yield (
                    "k",
                    f"{k:g}",
                    f"{base}_k{self._sweep_name(k)}",
                    {**cfg, "slm": {**cfg["slm"], "k": k}, "stages": stage},
                    None,
                )
        longest = max(spec["iterations"], default=0) + 1
        if longest > cfg["stages"]:  # the iteration sweep goes past the base's last stage
            yield ("iterations", f"{longest - 1}", f"{base}_stages{longest}",
                   {**cfg, "stages": longest}, None)

    def add_gslm_sweeps(self) -> None:
        """Register the derived sweep points of `tables.gslm_fig8` in `self.config["gslm"]` (and
        their Coarse Generation in `affinity_labels`), so that each is an ordinary `{gslm}` with
        its own params. Called in the Snakefile before the wildcard constraints."""
        spec = self.config["tables"].get("gslm_fig8")
        if not spec:
            return
        derived = {}
        for _, _, name, cfg, labels in self.gslm_sweep_points(spec):
            if name != spec["base"]:
                derived[name] = cfg
            if labels:
                self.config["affinity_labels"][cfg["coarse_generation"]] = labels
        clash = sorted(set(derived) & set(self.config["gslm"]))
        if clash:
            config_error(f"gslm.{clash[0]}", "this name is reserved for a gslm_fig8 sweep point")
        self.config["gslm"].update(derived)

    def gslm_fig8_variants(self, spec: dict[str, Any]) -> dict[str, list[list[Any]]]:
        """Per sweep of `tables.gslm_fig8`: [value label, gslm configuration, stage] per point;
        the iterations are stages of the base, or of the base run to more stages
        (`{base}_stages{n}`) when the sweep goes past its last one."""
        base, stage = spec["base"], spec["sweep_stage"]
        last = self.gslm_config(base)["stages"]
        if stage > last:
            config_error(
                "tables.gslm_fig8.sweep_stage",
                f"stage {stage} is past {base!r}'s last stage {last}",
            )
        variants: dict[str, list[list[Any]]] = {"thresholds": [], "k": []}
        iterated = base
        for sweep, value, name, _, _ in self.gslm_sweep_points(spec):
            if sweep == "iterations":
                iterated = name
            else:
                variants[sweep].append([value, name, stage])
        variants["iterations"] = [[str(it), iterated, it + 1] for it in spec["iterations"]]
        return variants

    def gslm_modules(self, name: str) -> dict[str, bool]:
        """Which of GSLM's parts a configuration uses (GSLM (Mai et al.) Table 5's columns)."""
        cfg = self.gslm_config(name)
        return {
            "CR": cfg["coarse_generation"] != "none",
            "SR": cfg["slm"].get("seed_reactivation", True),
            "L_cls": cfg["slm"].get("classification_loss", True),
        }

    def gslm_eval_path(self, classifier: str, name: str, n: int,
                       dataset: str | None = None) -> str:
        """Evaluation of stage n of GSLM configuration `name` (stage 1: its first source)."""
        dataset = dataset or self.config["dataset"]
        split = self.dataset_config(dataset)["eval_split"]
        cfg = self.gslm_config(name)
        if n == 1:
            return self.first_source_path(
                dataset, classifier, cfg["first_source"], split, "eval.json"
            )
        return f"results/{dataset}/{classifier}/{name}/stage{n}/{split}/eval.json"

    def train_data_params(self, dataset: str, classifier: str) -> dict[str, Any]:
        """Training data of a classifier: the dataset's train split unless it names one."""
        data = self.dataset_params(dataset, "train_split")
        split = self.classifier_config(classifier).get("train_split")
        return {**data, "split": split} if split else data

    def dataset_checks(self, wildcards: Any) -> list[str]:
        """The ``check_dataset`` reports a trained stage waits for: every split the dataset
        names (train, eval, val) and the classifier's own ``train_split``, if any."""
        ds = self.dataset_config(wildcards.dataset)
        splits = {ds[k] for k in ("train_split", "eval_split", "val_split") if k in ds}
        classifier = getattr(wildcards, "classifier", None)
        if classifier is not None:
            splits.add(self.train_data_params(wildcards.dataset, classifier)["split"])
        return [f"results/{wildcards.dataset}/checks/{s}.json" for s in sorted(splits)]

    def dataset_fingerprint(self, dataset: str, split: str) -> str | None:
        """The ``check_dataset`` param that makes Snakemake rerun the check — and every stage
        after it — when a split's files change (:meth:`SegmentationDataset.fingerprint`).
        None for a generated benchmark, which its own rule rebuilds from its params."""
        if self.generated_root(dataset):
            return None
        from camflow.data import build_dataset

        ds = self.dataset_config(dataset)
        return build_dataset(self.dataset_format(dataset), ds["root"]).fingerprint(split)

    def dataset_marker(self, wildcards: Any) -> str | list[str]:
        """A synthetic benchmark is built by a rule; real datasets are read where they lie."""
        root = self.generated_root(wildcards.dataset)
        return f"{root}/meta.json" if root else []

    @property
    def threads(self) -> int:
        """A job's ``threads:``: ``runtime.workers``, at least 1 — Snakemake exports it as
        ``OMP_NUM_THREADS``, and libgomp warns about every job when that is 0."""
        return max(1, int(self.config["runtime"]["workers"]))

    def stage_resources(self, stage: str) -> dict[str, Any]:
        """The cluster resources of a stage, from ``resources.<stage>``."""
        if stage not in self.config["resources"]:
            config_error(f"resources.{stage}", "no resources set for this stage")
        return self.config["resources"][stage]

    def check_resources(self, stages: set[str]) -> None:
        """Every ``resources.<name>`` names a stage (a misspelled one fails here)."""
        for name in self.config["resources"]:
            if name not in stages:
                config_error(
                    f"resources.{name}",
                    f"no stage named {name!r}; stages: {', '.join(sorted(stages))}",
                )

    def runtime_params(self) -> dict[str, Any]:
        """Settings that change numbers (device and AMP); worker counts do not and stay out."""
        return {"device": self.config["runtime"]["device"], "amp": self.config["runtime"]["amp"]}

    # Tables: a new table registers the function listing its inputs here.

    def eval_path(self, classifier: str, source: str, dataset: str | None = None,
                  split: str | None = None) -> str:
        dataset = dataset or self.config["dataset"]
        split = split or self.dataset_config(dataset)["eval_split"]
        self.classifier_config(classifier)
        return f"results/{dataset}/{classifier}/{source}/{split}/eval.json"

    def table(self, name: str) -> PaperTable:
        """The table ``name`` (a registered table with a ``tables.<name>`` block), resolved."""
        from camflow.schema import extend, validate_block
        from camflow.tables import table_class

        cls = table_class(name)
        if name not in self.config["tables"]:
            config_error(f"tables.{name}", f"table {name!r} is not configured")
        spec = self.config["tables"][name]
        if cls.schema:
            spec = validate_block(spec, f"tables.{name}", extend({"type": "object"}, cls.schema),
                                  self.schema["$defs"])
        return cls(cls.resolve(self, spec))

    def table_spec(self, name: str) -> dict[str, Any]:
        """What the table's builder needs (its resolved config block)."""
        return self.table(name).spec

    def table_inputs(self, name: str, dataset: str) -> dict[str, str]:
        """The evaluation records table ``name`` reads on ``dataset``, by key."""
        return self.table(name).inputs(self, dataset)

    def cam_figure(self, eval_path: str) -> str | None:
        """The CAM figure (overlays, threshold curve) beside the evaluation of a CAM cache —
        ``results/{dataset}/{classifier}/{source}/{split}/eval.json``, a source being a
        configured one or a GSLM stage — None for an evaluation of masks or a segmenter."""
        parts = eval_path.split("/")
        cams = (len(parts) == 6 and parts[3] in self.config["sources"]) or (
            len(parts) == 7 and parts[3] in self.config["gslm"]
            and re.fullmatch(r"stage[0-9]+", parts[4]) is not None)
        return str(Path(eval_path).with_name("figure.png")) if cams else None

    def table_targets(self, name: str, dataset: str | None = None) -> list[str]:
        """What target rule ``name`` (and rule ``all``) builds for a table: its files
        (``.csv``, ``.md``, ``.html``, ``_classes.png``, the paper's figure if it has one),
        the figures the report shows beside it (the CAM figure of every CAM cache it reads,
        the table's own figures) and its extras (test-server submissions)."""
        dataset = dataset or self.config["dataset"]
        table = self.table(name)
        base = f"results/{dataset}/tables/{name}"
        files = [f"{base}.csv", f"{base}.md", f"{base}.html", f"{base}_classes.png"]
        if table.figure:
            files.append(f"{base}.png")
        cam_figures = (self.cam_figure(p) for p in table.inputs(self, dataset).values())
        files += sorted({f for f in cam_figures if f})
        return files + table.figures(self, dataset) + table.extras(self, dataset)

    def table_description(self, name: str) -> str:
        """The one line ``--list-target-rules`` shows for table ``name``'s target rule."""
        from camflow.tables import table_class

        about = table_class(name).about()
        return (f"{about['short']}: {about['title']} → "
                f"results/{self.config['dataset']}/tables/{name}.csv")
