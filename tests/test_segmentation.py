"""DeepLab segmenters: shapes, atrous backbone, exact resumption, pseudo masks, evaluation."""

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from camflow.data.transforms import normalize
from camflow.data.voc import SyntheticDataset
from camflow.io import CamflowInputError, write_label_png
from camflow.models.backbones import build_backbone
from camflow.models.deeplab import build_segmenter
from camflow.runtime import load_checkpoint
from camflow.segmentation import (
    SegmentationTrainData,
    augment_pair,
    evaluate_segmentation,
    load_segmenter,
    predict_probs,
    train_segmentation,
)
from camflow.trainer import resume_path
from fixtures import SYNTHETIC_SPLITS, make_synthetic_fixture

SMALL = {"arch": "resnet_small", "strides": [2, 2, 1, 1], "widths": [4, 8, 8, 16],
         "blocks": [1, 1, 1, 1], "weights": "none"}
CFG = {
    "arch": "deeplabv2",
    "backbone": SMALL,
    "aspp_rates": [1, 2, 3],
    "freeze_bn_stats": False,
    "optimizer": {"lr": 0.01, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 5e-4,
                  "poly_power": 0.9},
    "batch_size": 2,
    "iterations": 5,
    "augment": {"scale": [0.75, 1.25], "flip": True, "crop": 16},
    "checkpoint_every": 2,
    "seed": 1,
}
V3PLUS = {**CFG, "arch": "deeplabv3plus",
          "backbone": {**SMALL, "strides": [2, 2, 2, 1], "dilation": [False, False, True]}}
CPU = torch.device("cpu")


@pytest.fixture
def dataset(tmp_path: Path) -> SyntheticDataset:
    return SyntheticDataset(make_synthetic_fixture(tmp_path / "data"))


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train(cfg: dict, dataset: SyntheticDataset, out: Path, masks_dir: Path | None = None,
          **kwargs) -> Path:
    return train_segmentation(cfg, dataset, "train", masks_dir, out, CPU, progress=False,
                              **kwargs)


@pytest.mark.parametrize("cfg", [CFG, V3PLUS], ids=["deeplabv2", "deeplabv3plus"])
def test_logits_have_input_size_and_one_channel_per_class(cfg: dict) -> None:
    torch.manual_seed(0)
    model = build_segmenter(cfg, 4).train()
    out = model(torch.randn(2, 3, 33, 47))
    assert out.shape == (2, 4, 33, 47)


def test_deeplabv2_aspp_sums_dilated_branches_with_the_configured_rates() -> None:
    torch.manual_seed(0)
    model = build_segmenter({**CFG, "aspp_rates": [1, 2, 3, 5]}, 4).eval()
    branches = list(model.head.branches)
    assert [b.dilation for b in branches] == [(1, 1), (2, 2), (3, 3), (5, 5)]
    assert [b.padding for b in branches] == [(1, 1), (2, 2), (3, 3), (5, 5)]
    assert all(b.kernel_size == (3, 3) and b.out_channels == 4 for b in branches)
    features = torch.randn(1, SMALL["widths"][-1], 6, 7)
    expected = sum(b(features) for b in branches)
    torch.testing.assert_close(model.head(features), expected)


def test_deeplabv3plus_decoder_reads_the_stride4_stage() -> None:
    model = build_segmenter(V3PLUS, 3)
    assert model.head.low[0].in_channels == SMALL["widths"][0]
    assert model.head.aspp.rates == [1, 2, 3]
    assert len(model.head.aspp.branches) == 4  # 1×1 + three rates (+ image pooling)


def test_dilated_resnet101_has_output_stride_8_with_dilated_convs() -> None:
    net = build_backbone({"arch": "resnet101", "strides": [2, 2, 1, 1],
                          "dilation": [False, True, True], "weights": "none"})
    with torch.no_grad():
        feats = net.eval()(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 8, 8]
    # strides [2, 2, 1, 1] alone also give stride 8: the convolutions must really be dilated
    assert net.stages[2][1].conv2.dilation == (2, 2)
    assert net.stages[3][1].conv2.dilation == (4, 4)
    plain = build_backbone({"arch": "resnet101", "strides": [2, 2, 1, 1], "weights": "none"})
    assert plain.stages[3][1].conv2.dilation == (1, 1)


def test_dilated_layer_with_stride_2_is_refused() -> None:
    with pytest.raises(CamflowInputError, match=r"dilation\[1\].*strides\[2\]"):
        build_backbone({**SMALL, "strides": [2, 2, 2, 1], "dilation": [False, True, True]})
    with pytest.raises(CamflowInputError, match="only supported for ResNets"):
        build_backbone({"arch": "vgg16", "dilation": [False, False, True], "weights": "none"})


def test_augmentation_pads_image_with_mean_and_label_with_ignore() -> None:
    image = np.full((8, 10, 3), 200, dtype=np.uint8)
    mask = np.ones((8, 10), dtype=np.uint8)
    rng = np.random.default_rng(0)
    x, y = augment_pair(image, mask, {"scale": [1.0, 1.0], "flip": False, "crop": 12}, rng)
    assert x.shape == (3, 12, 12) and y.shape == (12, 12)
    assert (y[:8, :10] == 1).all() and (y[8:] == 255).all() and (y[:, 10:] == 255).all()
    assert (x[:, 8:] == 0).all() and (x[:, :8, :10] == normalize(image)[:, 0:1, 0:1]).all()


def test_flip_and_crop_keep_image_and_label_aligned() -> None:
    mask = np.zeros((12, 12), dtype=np.uint8)
    mask[:, :5] = 1
    mask[2:4, 7:] = 2
    colours = np.array([[10, 10, 10], [120, 60, 30], [250, 200, 90]], dtype=np.uint8)
    image = colours[mask]
    expected = {c: normalize(colours[c][None, None])[:, 0, 0] for c in range(3)}
    aug = {"scale": [1.0, 1.0], "flip": True, "crop": 9}
    flipped = set()
    for seed in range(8):
        x, y = augment_pair(image, mask, aug, np.random.default_rng(seed))
        for c in range(3):
            assert np.allclose(x[:, y == c].T, expected[c]), f"seed {seed}, class {c}"
        flipped.add(bool((y[:, -1] == 1).any()))
    assert flipped == {True, False}, "both flipped and unflipped samples expected"


def test_each_pass_visits_every_id_once(dataset: SyntheticDataset) -> None:
    ids = ["a", "b", "c", "d", "e"]
    data = SegmentationTrainData(dataset, "train", ids, None, CFG["augment"], seed=4)
    passes = [[data.image_id(e * 5 + i) for i in range(5)] for e in range(3)]
    assert all(sorted(p) == ids for p in passes)
    assert len({tuple(p) for p in passes}) > 1, "each pass should be reshuffled"


def weights(path) -> dict:
    return load_checkpoint(path)["networks"]["segmenter"]


@pytest.mark.parametrize("cfg", [CFG, V3PLUS], ids=["deeplabv2", "deeplabv3plus"])
def test_interrupted_training_resumes_to_identical_weights(cfg: dict, dataset, tmp_path) -> None:
    full = train(cfg, dataset, tmp_path / "full" / "seg.pt")
    part = tmp_path / "part" / "seg.pt"
    state = train(cfg, dataset, part, stop_after_iterations=3)
    assert state == resume_path(part) and not part.exists()
    assert load_checkpoint(state)["step"] == 3
    train(cfg, dataset, part)
    assert part.exists() and not resume_path(part).exists()
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert states_equal(a["networks"]["segmenter"], b["networks"]["segmenter"])
    assert a["masks"] == "ground_truth" and a["split"] == "train"
    assert a["class_names"] == list(dataset.class_names) and a["format_version"] == 2
    init = build_segmenter(cfg, len(dataset.class_names)).state_dict()
    assert not states_equal(init, a["networks"]["segmenter"]), "training must change the weights"


def test_resume_state_of_another_config_is_ignored(dataset, tmp_path) -> None:
    out = tmp_path / "seg.pt"
    train(CFG, dataset, out, stop_after_iterations=4)
    other = copy.deepcopy(CFG)
    other["optimizer"]["lr"] = 0.002
    train(other, dataset, out)
    reference = train(other, dataset, tmp_path / "ref.pt")
    assert states_equal(weights(out), weights(reference))
    # had the stale state been used, the result would differ from the reference
    stale = train(CFG, dataset, tmp_path / "stale.pt")
    assert not states_equal(weights(stale), weights(out))


def copy_masks(dataset: SyntheticDataset, split: str, out: Path) -> Path:
    out.mkdir(parents=True)
    for image_id in dataset.ids(split):
        shutil.copy(dataset.mask_path(image_id, split), out / f"{image_id}.png")
    return out


def test_pseudo_masks_equal_to_ground_truth_train_the_same_model(dataset, tmp_path) -> None:
    cfg = {**CFG, "iterations": 3}
    masks = copy_masks(dataset, "train", tmp_path / "masks")
    a = load_checkpoint(train(cfg, dataset, tmp_path / "gt.pt"))
    b = load_checkpoint(train(cfg, dataset, tmp_path / "pseudo.pt", masks))
    assert states_equal(a["networks"]["segmenter"], b["networks"]["segmenter"])
    assert b["masks"] == str(masks)
    # and different masks give a different model (the masks are really read)
    for image_id in dataset.ids("train"):
        write_label_png(masks / f"{image_id}.png", np.zeros((16, 24), np.uint8))
    c = load_checkpoint(train(cfg, dataset, tmp_path / "zeros.pt", masks))
    assert not states_equal(a["networks"]["segmenter"], c["networks"]["segmenter"])


def test_missing_or_missized_pseudo_mask_names_the_image(dataset, tmp_path) -> None:
    masks = copy_masks(dataset, "train", tmp_path / "masks")
    missing = SYNTHETIC_SPLITS["train"][1]
    (masks / f"{missing}.png").unlink()
    with pytest.raises(CamflowInputError, match=missing):
        train(CFG, dataset, tmp_path / "seg.pt", masks)
    assert not (tmp_path / "seg.pt").exists()
    write_label_png(masks / f"{missing}.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(CamflowInputError, match=rf"{missing}.*{missing}\.png.*size"):
        train(CFG, dataset, tmp_path / "seg.pt", masks)


def test_flip_averaging_is_flip_equivariant(dataset, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_segmenter(CFG, 3).eval()
    image = dataset.load_image("syn_0001")
    probs = predict_probs(model, image, [1.0, 0.75], True, CPU)
    mirrored = predict_probs(model, np.ascontiguousarray(image[:, ::-1]), [1.0, 0.75], True, CPU)
    np.testing.assert_allclose(probs, mirrored[:, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_evaluation_miou_matches_a_hand_computed_confusion_matrix(dataset, tmp_path) -> None:
    ckpt = train({**CFG, "iterations": 4}, dataset, tmp_path / "seg.pt")
    result = evaluate_segmentation(ckpt, dataset, "train", [1.0], False, None, CPU,
                                   progress=False)
    model = load_segmenter(ckpt, CPU)
    n = len(dataset.class_names)
    conf = np.zeros((n, n), dtype=np.int64)
    for image_id in dataset.ids("train"):
        with torch.no_grad():
            logits = model(torch.from_numpy(normalize(dataset.load_image(image_id)))[None])
        pred = logits[0].argmax(0).numpy()
        gt = dataset.load_mask(image_id, "train")
        np.add.at(conf, (gt.ravel().astype(int), pred.ravel()), 1)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    assert result["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]))
    assert result["kind"] == "segmentation" and result["threshold"] is None
    assert [c["tp"] for c in result["per_class"]] == tp.tolist()
    assert result["n_images"] == 2 and result["crf"] is None
    assert result["provenance"]["scales"] == [1.0]

    with_crf = evaluate_segmentation(ckpt, dataset, "train", [1.0, 0.5], True,
                                     {"iters": 2}, CPU, workers=2, progress=False)
    sequential = evaluate_segmentation(ckpt, dataset, "train", [1.0, 0.5], True,
                                       {"iters": 2}, CPU, workers=1, progress=False)
    assert with_crf["crf"]["params"]["iters"] == 2 and with_crf["crf"]["params"]["bi_sxy"] == 80
    assert with_crf["crf"]["per_class"] == sequential["crf"]["per_class"]
    pixels = sum(c["tp"] + c["fn"] for c in with_crf["crf"]["per_class"])
    assert pixels == 2 * 16 * 24
    assert "single_scale" not in with_crf


def test_single_scale_metrics_are_a_scale_1_no_flip_evaluation(dataset, tmp_path) -> None:
    """The segmentation tables' "val" column: scale 1 without flip, beside the configured
    multi-scale + flip prediction (a low learning rate keeps the tiny model's predictions
    varied, so the two differ)."""
    cfg = {**CFG, "iterations": 3, "optimizer": {**CFG["optimizer"], "lr": 1e-4}}
    ckpt = train(cfg, dataset, tmp_path / "seg.pt")
    both = evaluate_segmentation(ckpt, dataset, "train", [1.0, 0.5], True, None, CPU,
                                 progress=False, single_scale=True)
    single = evaluate_segmentation(ckpt, dataset, "train", [1.0], False, None, CPU,
                                   progress=False)
    assert both["single_scale"]["per_class"] == single["per_class"]
    assert both["single_scale"]["per_class"] != both["per_class"]
    assert both["per_class"] == evaluate_segmentation(
        ckpt, dataset, "train", [1.0, 0.5], True, None, CPU, progress=False)["per_class"]


def test_bad_inputs_name_the_key(dataset, tmp_path) -> None:
    with pytest.raises(CamflowInputError, match="augment.crop"):
        train({**CFG, "augment": {**CFG["augment"], "crop": 0}}, dataset, tmp_path / "a.pt")
    with pytest.raises(CamflowInputError, match="freeze_bn_stats"):
        train({k: v for k, v in CFG.items() if k != "freeze_bn_stats"}, dataset,
              tmp_path / "a.pt")
    with pytest.raises(CamflowInputError, match="unknown CRF parameter"):
        evaluate_segmentation(tmp_path / "none.pt", dataset, "val", [1.0], False,
                              {"sigma": 1}, CPU, progress=False)
