"""GSLM's published code (github.com/Wheat2018/GSLM, ``run_sample.py`` defaults) as
``slm.variant: code`` and the ``gslm_code`` profiles, checked against the code's formulas
written out independently here, and the paper profile against GSLM (Mai et al.) Sec. 5.1.

Formulas of the code (``docs/fidelity.md``, GSLM):

* activation loss, ``step/train_fuse_cam.py`` ``seg_criterion``: per image, the valid pixels
  are those whose (nearest-reduced) label is not 255; M = ReLU(f) ÷ (max over pixels + 1e-5)
  per class; the loss is Σ_images Σ_present classes mean_valid smoothL1(6·M_c, 6·[label = c]);
  the total is L_cls + 0.5 · that sum;
* inference, ``step/make_cam.py`` with ``net/extractor/extractor.py``
  ``Extractor.mixin_multi_cams`` (the ``resnet50_cam`` network ``train_fuse_cam`` builds):
  per scale PIL-bicubic rescale, ReLU maps of the image and its flip (flipped back), each
  resized bilinearly straight to H×W, summed, ÷ (max + 1e-5);
* Coarse Generation, ``step/make_pseudo.py`` with ``net/refiner/refiner.py`` ``DenseCRF``:
  IRN's label CRF with Gaussian compat 10.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydensecrf.densecrf as dcrf
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from pydensecrf.utils import unary_from_labels

from camflow.io import CamflowInputError
from camflow.methods.cam import fuse_tta, max_normalize, strided_size
from camflow.methods.gslm import SLM as SLMMethod
from camflow.methods.gslm import (
    SLM_SCHEMA,
    code_activation_loss,
    confidence_maps,
    max_normalized_relu,
    slm_loss,
)
from camflow.models import build_classifier
from camflow.refine.affinity_labels import irn_labels
from camflow.workflow import Workflow

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())

NET = {
    "backbone": {"arch": "resnet_small", "strides": [2, 2, 1, 1], "widths": [4, 4, 8, 8],
                 "blocks": [1, 1, 1, 1], "weights": "none"},
    "freeze_bn_stats": False, "trainable_from_stage": 1,
}
CODE = {"k": 6, "alpha": 0.5, "seed_reactivation": True, "classification_loss": True,
        "variant": "code"}


def smooth_l1(d: np.ndarray) -> np.ndarray:
    """Huber with β = 1, elementwise."""
    a = np.abs(d)
    return np.where(a < 1, 0.5 * d * d, a - 0.5)


def reference_seg_criterion(relu_maps: np.ndarray, labels: np.ndarray,
                            present: np.ndarray) -> float:
    """The code's activation loss (module doc) in numpy: ``relu_maps`` B×K×h×w ReLU(f),
    ``labels`` B×h×w (0..K, 255) at the same size, ``present`` B×K image-level labels."""
    total = 0.0
    for maps, label, classes in zip(relu_maps, labels, present, strict=True):
        valid = label != 255
        if not valid.any():
            continue
        m = maps / (maps.max(axis=(1, 2), keepdims=True) + 1e-5)
        for c in np.nonzero(classes)[0]:
            target = (label[valid] == c + 1).astype(np.float64)
            total += smooth_l1(6.0 * m[c][valid] - 6.0 * target).mean()
    return total


def random_labels(rng: np.random.Generator, present: np.ndarray, shape: tuple[int, int]
                  ) -> np.ndarray:
    """Labels drawn from background, ignore and the present classes, plus one absent class
    (the code and camflow both treat it as 0 for every present class)."""
    absent = np.nonzero(present == 0)[0][:1] + 1
    choices = np.concatenate([[0, 255], np.nonzero(present)[0] + 1, absent])
    return rng.choice(choices, size=shape).astype(np.uint8)


def test_code_activation_loss_equals_the_codes_formula() -> None:
    rng = np.random.default_rng(0)
    for trial in range(20):
        b, k, h, w = 3, 5, 6, 7
        f = torch.from_numpy(rng.normal(size=(b, k, h, w)) * rng.uniform(0.1, 10))
        present = np.zeros((b, k))
        for i in range(b):
            present[i, rng.choice(k, size=int(rng.integers(1, 4)), replace=False)] = 1
        labels = np.stack([random_labels(rng, present[i], (h, w)) for i in range(b)])
        if trial % 4 == 0:
            labels[0] = 255                     # an image without a valid pixel
        n = torch.from_numpy(np.stack([
            confidence_maps(np.nonzero(present[i])[0] + 1, labels[i], k) for i in range(b)
        ])).double()
        got = code_activation_loss(max_normalized_relu(f), n, torch.from_numpy(present) > 0, 6.0)
        expected = reference_seg_criterion(F.relu(f).numpy(), labels, present)
        assert got.item() == pytest.approx(expected, abs=1e-10)


def test_code_activation_loss_hand_computed() -> None:
    """Two images; |6·(M′ − N)| above and below 1; per-(image, class) means summed."""
    f = torch.zeros(2, 2, 1, 4, dtype=torch.float64)
    f[0, 0, 0] = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64)   # image 0, class 1
    f[1, 1, 0] = torch.tensor([0.5, 0.5, 0.1, 0.0], dtype=torch.float64)   # image 1, class 2
    labels = np.array([[[1, 0, 255, 1]], [[2, 2, 0, 0]]], dtype=np.uint8)
    present = np.array([[1, 0], [0, 1]])
    n = torch.from_numpy(np.stack([confidence_maps(np.array([1]), labels[0], 2),
                                   confidence_maps(np.array([2]), labels[1], 2)])).double()
    got = code_activation_loss(max_normalized_relu(f), n, torch.from_numpy(present) > 0, 6.0)
    eps = 1e-5
    m0 = np.array([0.0, 1.0, 4.0]) / (4 + eps)                 # valid pixels 0, 1, 3
    m1 = np.array([0.5, 0.5, 0.1, 0.0]) / (0.5 + eps)
    image0 = (smooth_l1(6 * m0 - 6 * np.array([1, 0, 1]))).mean()   # 5.5, 1.0, ~0
    image1 = (smooth_l1(6 * m1 - 6 * np.array([1, 1, 0, 0]))).mean()  # ~0, ~0, 0.7, 0
    assert image0 == pytest.approx((5.5 + 1.0) / 3, abs=1e-5)
    assert image1 == pytest.approx(0.7 / 4, abs=1e-5)
    assert got.item() == pytest.approx(image0 + image1, abs=1e-12)


def test_slm_loss_variant_code_is_the_codes_total_loss() -> None:
    """L_cls + 0.5·seg_criterion, the labels reduced torch-nearest to the CAM's size, in
    float64; the gradient matches too."""
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    for _ in range(3):
        model = build_classifier(NET, 4).double()
        images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
        present = np.array([[1.0, 0, 1, 0], [0, 1, 1, 0]])
        labels = np.stack([random_labels(rng, present[i], (32, 32)) for i in range(2)])
        targets = torch.from_numpy(present)
        n = torch.from_numpy(np.stack([
            confidence_maps(np.nonzero(present[i])[0] + 1, labels[i], 4) for i in range(2)
        ])).double()
        got = slm_loss(model, images, targets, n, CODE)
        got.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        f = model.head(model.features(images))
        small = F.interpolate(torch.from_numpy(labels)[:, None].float(), f.shape[-2:],
                              mode="nearest")[:, 0].numpy().astype(np.uint8)
        act = reference_seg_criterion(F.relu(f).detach().numpy(), small, present)
        expected = F.multilabel_soft_margin_loss(f.mean((2, 3)), targets).item() + 0.5 * act
        assert got.item() == pytest.approx(expected, abs=1e-10)
        # the same loss in torch (the code's per-class loop), for the gradient
        relu = F.relu(f)
        loss = F.multilabel_soft_margin_loss(f.mean((2, 3)), targets)
        for i in range(2):
            valid = torch.from_numpy(small[i] != 255)
            m = relu[i] / (relu[i].amax(dim=(1, 2), keepdim=True) + 1e-5)
            for c in np.nonzero(present[i])[0]:
                target = torch.from_numpy(small[i] == c + 1)[valid].double()
                loss = loss + 0.5 * F.smooth_l1_loss(6 * m[c][valid], 6 * target)
        loss.backward()
        for g, p in zip(grads, model.parameters(), strict=True):
            assert torch.allclose(g, p.grad, atol=1e-10, rtol=0)


def _slm(variant: str) -> SLMMethod:
    """An SLM stage rebuilt from its own config (random weights; nothing read), its head
    scaled so that the logits pass 6 (where ReLU and ReLU6 part)."""
    cfg = {**CODE, "variant": variant, "network": {"method": "cam", "config": NET}}
    slm = SLMMethod.from_checkpoint(cfg, 4)
    with torch.no_grad():
        slm.classifier.head.weight.mul_(50.0)
    return slm


def test_code_variant_inference_map_is_the_codes() -> None:
    """make_cams' fusion of the SLM's ``cam`` (grid 1: straight to H×W, as the code) equals
    ``Extractor.mixin_multi_cams`` over ``resnet50_cam``'s ReLU maps, to 1e-5 in float64."""
    torch.manual_seed(0)
    slm = _slm("code")
    net = slm.classifier.double().eval()
    rng = np.random.default_rng(2)
    scales = (1.0, 0.5, 1.5, 2.0)
    classes = torch.arange(4)
    for h, w in [(37, 45), (40, 33)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        sizes = [(h, w), strided_size((h, w), 4)]
        with torch.no_grad():
            got = fuse_tta(lambda x: slm.cam(x.double(), classes), [image], scales,
                           True, [(sizes[0], 1), (sizes[1], 1)], torch.device("cpu"))
            maps = []
            for s in scales:
                size = (int(np.round(w * s)), int(np.round(h * s)))
                scaled = image if s == 1 else np.asarray(
                    Image.fromarray(image).resize(size, Image.BICUBIC))
                x = (scaled / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
                x = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)).double()
                maps += [F.relu(net.head(net.features(x))),
                         F.relu(net.head(net.features(x.flip(-1)))).flip(-1)]
            assert max(m.max().item() for m in maps) > 6
            for fused, size in zip(got, sizes, strict=True):
                ref = sum(F.interpolate(m, size, mode="bilinear", align_corners=False)
                          for m in maps)
                ref = ref / (ref.amax(dim=(2, 3), keepdim=True) + 1e-5)
                assert (max_normalize(fused.double()) - ref).abs().max().item() < 1e-5


def test_slm_inference_is_the_relu_cam_in_both_variants() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 24, 24)
    for variant in ("paper", "code"):
        slm = _slm(variant)
        expected = F.relu(slm.classifier.head(slm.classifier.features(x)))[:, [0, 2]]
        assert expected.max() > 6
        assert torch.equal(slm.cam(x, torch.tensor([0, 2])), expected)


def reference_coarse_generation(image: np.ndarray, keys: np.ndarray, cams: np.ndarray
                                ) -> np.ndarray:
    """``step/make_pseudo.py`` with ``DenseCRF`` (module doc), written out with pydensecrf."""
    h, w = image.shape[:2]
    lut = np.concatenate([[0], keys])

    def crf(threshold: float) -> np.ndarray:
        seeds = np.concatenate([np.full((1, h, w), threshold), cams]).argmax(0)
        d = dcrf.DenseCRF2D(w, h, len(lut))
        d.setUnaryEnergy(unary_from_labels(seeds, len(lut), gt_prob=0.7, zero_unsure=False))
        d.addPairwiseGaussian(sxy=3, compat=10)
        d.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.ascontiguousarray(image), compat=10)
        q = np.array(d.inference(10)).reshape(len(lut), h, w)
        return lut[q.argmax(0)]

    fg, bg = crf(0.30), crf(0.05)
    fg[(fg == 0) & (bg != 0)] = 255
    return fg


def test_gslm_code_coarse_generation_is_the_codes() -> None:
    spec = CONFIG["affinity_labels"]["gslm_code"]
    assert spec["method"] == "irn"
    assert (spec["fg_threshold"], spec["bg_threshold"]) == (0.30, 0.05)
    assert spec["crf"] == {"gt_prob": 0.7, "gauss_sxy": 3, "gauss_compat": 10, "bi_sxy": 50,
                           "bi_srgb": 5, "bi_compat": 10, "iters": 10}
    assert CONFIG["affinity_labels"]["gslm"]["crf"]["gauss_compat"] == 3   # paper profile
    rng = np.random.default_rng(3)
    h, w = 30, 40
    yy, xx = np.mgrid[:h, :w]
    image = np.full((h, w, 3), 60, np.uint8)
    image[5:20, 5:22] = (220, 40, 40)
    image[12:28, 25:38] = (40, 200, 60)
    image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
    keys = np.array([2, 5])
    cams = np.stack([np.exp(-((yy - 12) ** 2 + (xx - 13) ** 2) / 60.0),
                     np.exp(-((yy - 20) ** 2 + (xx - 31) ** 2) / 40.0)])
    got = irn_labels(image, keys, cams, spec["fg_threshold"], spec["bg_threshold"],
                     crf=spec["crf"])
    expected = reference_coarse_generation(image, keys, cams)
    assert set(np.unique(expected)) >= {0, 2, 5, 255}
    np.testing.assert_array_equal(got, expected)


def test_paper_and_code_profiles() -> None:
    """``gslm_paper`` follows GSLM (Mai et al.) Sec. 5.1; ``gslm_code`` the code's defaults
    (``run_sample.py``: fuse_cam lr 0.001 with ×10 for the head, weight decay 1e-4, 10 epochs,
    3 iterations, batch 16, seg loss rate 0.5; ``misc/torchutils.py`` ``PolyOptimizer`` passes
    the weight decay as SGD's momentum)."""
    paper, code = CONFIG["gslm"]["gslm_paper"], CONFIG["gslm"]["gslm_code"]
    for cfg in (paper, code):
        assert cfg["first_source"] == "cam" and cfg["stages"] == 4   # GLM + 3 SLM iterations
        slm = cfg["slm"]
        assert (slm["k"], slm["alpha"], slm["batch_size"]) == (6, 0.5, 16)
        assert slm["optimizer"]["lr"] * slm["optimizer"]["head_lr_mult"] == pytest.approx(0.01)
        assert slm["optimizer"]["lr"] == pytest.approx(0.001)
        assert slm["augment"]["resize_long"] == [320, 640] and slm["augment"]["crop"] == 512
    assert "variant" not in paper["slm"]          # the schema's default: paper
    assert (paper["slm"]["optimizer"]["weight_decay"], paper["slm"]["epochs"]) == (0.001, 5)
    assert paper["coarse_generation"] == "gslm"
    assert code["slm"]["variant"] == "code"
    assert code["slm"]["optimizer"]["weight_decay"] == 0.0001
    assert code["slm"]["optimizer"]["momentum"] == 0.0001
    assert code["slm"]["epochs"] == 10
    assert code["coarse_generation"] == "gslm_code"


def test_variant_is_validated_and_defaults_to_paper() -> None:
    assert SLM_SCHEMA["properties"]["variant"]["enum"] == ["paper", "code"]
    wf = Workflow(copy.deepcopy(CONFIG))
    wf.check()
    assert wf.slm_config("gslm")["variant"] == "paper"
    assert wf.slm_config("gslm_code")["variant"] == "code"
    bad = copy.deepcopy(CONFIG)
    bad["gslm"]["gslm_code"]["slm"]["variant"] = "published"
    with pytest.raises(CamflowInputError, match="gslm.gslm_code.slm.variant"):
        Workflow(bad).check()
