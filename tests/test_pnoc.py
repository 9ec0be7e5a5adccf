"""P-NOC's training methods (David et al.): Puzzle-CAM's tile and merge (Eq. 3), the λ_re,
λ_cse and λ_noc ramps (Sec. 6.1), ψ and the class-specific erasing masks (Eq. 2, 4–5,
Alg. 1 line 11), label smoothing, and P-NOC's alternating updates (Alg. 1): noc is trained
exactly every k_noc steps, and then only noc's weights change."""

from __future__ import annotations

import csv
from typing import Any

import pytest
import torch
import yaml

from camflow.data.voc import SyntheticDataset
from camflow.io import CamflowInputError
from camflow.methods.base import load_method, method_config, train_method
from camflow.methods.oc_cse import psi, remaining_labels, soft_erase
from camflow.methods.pnoc import PNOC, hard_erase, noc_weight
from camflow.methods.puzzle import merge, re_weight, reconstruction_loss, tile
from camflow.models.classifier import smooth_labels
from camflow.trainer import Progress, metrics_path, resume_path
from camflow.workflow import SCHEMA
from fixtures import make_synthetic_fixture

DEFS = yaml.safe_load(SCHEMA.read_text())["$defs"]
CPU = torch.device("cpu")
BASE = {"backbone": {"arch": "resnet_small", "strides": [2, 2, 2, 1], "widths": [4, 4, 8, 8],
                     "blocks": [1, 1, 1, 1], "weights": "none"},
        "optimizer": {"lr": 0.05, "head_lr_mult": 10, "momentum": 0.9, "weight_decay": 1e-4,
                      "poly_power": 0.9},
        "batch_size": 2, "epochs": 2, "seed": 1,
        "augment": {"resize_long": [28, 36], "flip": True, "crop": 32}}


def config(method: str, **keys: Any) -> dict[str, Any]:
    return method_config({**BASE, "method": method, **keys}, f"classifiers.{method}",
                         DEFS["classifier"], DEFS)


def at(step: int, total: int = 100) -> Progress:
    return Progress(step, total, 0)


@pytest.fixture
def dataset(tmp_path) -> SyntheticDataset:
    return SyntheticDataset(make_synthetic_fixture(tmp_path / "data"))


def test_tile_cuts_quadrants_and_merge_inverts_it() -> None:
    x = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).reshape(2, 1, 4, 6)
    tiles = tile(x, 4)
    assert tiles.shape == (8, 1, 2, 3)
    # tile-major: quadrant (row, col) of image b at index (row * 2 + col) * B + b
    assert torch.equal(tiles[0, 0], x[0, 0, :2, :3])
    assert torch.equal(tiles[3, 0], x[1, 0, :2, 3:])   # (0, 1), image 1
    assert torch.equal(tiles[4, 0], x[0, 0, 2:, :3])   # (1, 0), image 0
    assert torch.equal(tiles[7, 0], x[1, 0, 2:, 3:])
    assert torch.equal(merge(tiles, 4), x)
    y = torch.randn(3, 5, 9, 6)
    assert torch.equal(merge(tile(y, 9), 9), y)
    with pytest.raises(CamflowInputError, match="augment.crop"):
        tile(torch.zeros(1, 3, 5, 6), 4)


def test_reconstruction_loss_is_the_mean_absolute_error_over_all_or_present_classes() -> None:
    a = torch.zeros(1, 2, 2, 2)
    b = torch.zeros(1, 2, 2, 2)
    b[0, 0] = 1.0   # class 0 present, error 1 everywhere
    b[0, 1] = 3.0   # class 1 absent, error 3 everywhere
    targets = torch.tensor([[1.0, 0.0]])
    assert reconstruction_loss(a, b, targets, "all").item() == pytest.approx(2.0)
    assert reconstruction_loss(a, b, targets, "present").item() == pytest.approx(0.5)
    with pytest.raises(CamflowInputError, match="augment.crop"):
        reconstruction_loss(a, torch.zeros(1, 2, 2, 3), targets, "all")


def test_ramps_follow_section_6_1() -> None:
    puzzle = config("puzzle")["puzzle"]
    assert [re_weight(puzzle, at(s)) for s in (0, 25, 50, 90)] == [0.0, 2.0, 4.0, 4.0]
    from camflow.methods.oc_cse import cse_weight
    cse = config("oc_cse", oc="x")["cse"]
    assert cse_weight(cse, at(0)) == pytest.approx(0.3)
    assert cse_weight(cse, at(50)) == pytest.approx(0.65)
    assert cse_weight(cse, at(99)) == pytest.approx(0.3 + 0.7 * 0.99)
    noc = config("p_noc", oc="x")["noc"]
    assert (noc["every"], noc["threshold"], noc["mask"]) == (1, 0.2, "paper")
    assert [noc_weight(noc, at(s)) for s in (0, 50)] == [0.0, 0.5]


def test_label_smoothing_targets() -> None:
    y = torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.equal(smooth_labels(y, 0.0), y)
    assert torch.allclose(smooth_labels(y, 0.1), torch.tensor([[0.95, 0.05, 0.95]]))


def test_psi_and_the_erasing_masks() -> None:
    maps = torch.tensor([[[[-1.0, 0.0], [2.0, 4.0]]], [[[1.0, 1.0], [0.0, 0.5]]]])  # B=2, K=1
    assert torch.allclose(psi(maps), torch.tensor([[[[0, 0], [0.5, 1.0]]],
                                                   [[[1.0, 1.0], [0, 0.5]]]]), atol=1e-4)
    # the code's batch normalisation divides both images by the batch maximum, 4
    assert torch.allclose(psi(maps, "batch")[1], torch.tensor([[[0.25, 0.25], [0, 0.125]]]),
                          atol=1e-4)
    images = torch.ones(2, 3, 2, 2)
    r = torch.tensor([0, 0])
    soft = soft_erase(images, maps, r, "image")
    assert torch.allclose(soft[0, 0], torch.tensor([[1.0, 1.0], [0.5, 0.0]]), atol=1e-4)
    # Eq. 4-5: the soft mask passes gradients into f's maps
    leaf = maps.clone().requires_grad_(True)
    soft_erase(images, leaf, r, "image").sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    # Alg. 1 line 11: the paper keeps 1 - psi > 0.2 (psi < 0.8), the code psi <= 0.2;
    # neither carries a gradient
    paper = hard_erase(images, leaf, r, 0.2, "paper")
    code = hard_erase(images, leaf, r, 0.2, "code")
    assert not paper.requires_grad and not code.requires_grad
    assert torch.equal(paper[0, 0], torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(code[0, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert torch.equal(paper[1, 0], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(remaining_labels(torch.tensor([[1.0, 1.0]]), torch.tensor([1])),
                       torch.tensor([[1.0, 0.0]]))


@pytest.fixture
def oc_checkpoint(dataset, tmp_path):
    path = tmp_path / "oc" / "classifier.pt"
    train_method(config("cam", epochs=1), dataset, "train", path, CPU, progress=False)
    return path


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in net.state_dict().items()
               if v.dtype.is_floating_point and "running" not in k)


def test_noc_is_trained_every_k_steps_and_only_noc_changes_then(dataset, oc_checkpoint) -> None:
    cfg = config("p_noc", oc="oc", noc={"every": 2})
    method = PNOC(cfg, dataset.num_classes, {"oc": str(oc_checkpoint)}).to(CPU)
    # noc starts as oc
    oc = load_method(oc_checkpoint, CPU).classifier
    assert all(torch.equal(v, oc.state_dict()[k]) for k, v in method.noc.state_dict().items())
    optimizers = {name: torch.optim.SGD(spec.param_groups, lr=0.05)
                  for name, spec in method.optimizers().items()}
    calls: list[tuple[int, str, bool, bool]] = []

    def update(name: str, loss: torch.Tensor) -> None:
        f, noc = snapshot(method.classifier), snapshot(method.noc)
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()
        calls.append((step, name, changed(f, method.classifier), changed(noc, method.noc)))

    data = method.training_data(dataset, "train")
    batch = torch.utils.data.default_collate([data[0], data[1]])
    for step in range(4):
        terms = method.step(batch, Progress(step, 4, 0), update)
        assert ("noc" in terms) == (step % 2 == 1)
        assert set(terms) >= {"cls", "re_cls", "re", "cse"}
    # f every step, changing only f; noc after steps 2 and 4, changing only noc
    assert calls == [(0, "classifier", True, False), (1, "classifier", True, False),
                     (1, "noc", False, True), (2, "classifier", True, False),
                     (3, "classifier", True, False), (3, "noc", False, True)]


@pytest.mark.parametrize("method", ["puzzle", "oc_cse", "p_oc", "p_noc"])
def test_each_method_trains_and_rebuilds_and_p_noc_resumes(method, dataset, oc_checkpoint,
                                                           tmp_path) -> None:
    """Every method trains and its checkpoint rebuilds; P-NOC (two networks, two optimizers,
    a sampled class per step) resumes bit-exactly."""
    keys = {} if method == "puzzle" else {"oc": "oc"}
    cfg = config(method, label_smoothing=0.1, **keys)
    inputs = {"oc": str(oc_checkpoint)} if keys else None
    full = tmp_path / "full" / "classifier.pt"
    train_method(cfg, dataset, "train", full, CPU, inputs=inputs, progress=False)
    a = torch.load(full, weights_only=False)
    assert set(a["networks"]) == ({"classifier", "noc"} if method == "p_noc"
                                  else {"classifier"})
    if method == "p_noc":
        part = tmp_path / "part" / "classifier.pt"
        assert train_method(cfg, dataset, "train", part, CPU, inputs=inputs, progress=False,
                            stop_after_epochs=1) == resume_path(part)
        train_method(cfg, dataset, "train", part, CPU, inputs=inputs, progress=False)
        b = torch.load(part, weights_only=False)
        for net in a["networks"]:
            assert all(torch.equal(v, b["networks"][net][k])
                       for k, v in a["networks"][net].items()), net
    rows = list(csv.DictReader(metrics_path(full).open()))
    assert {"loss", "cls"} <= set(rows[0])
    assert ("re" in rows[0]) == (method != "oc_cse")
    assert ("cse" in rows[0]) == (method != "puzzle")
    trained = load_method(full, CPU)
    assert trained.classifier.cam(torch.zeros(1, 3, 32, 32)).shape == (1, 2, 2, 2)


def test_randaugment_is_a_pure_function_of_the_sample_seed() -> None:
    """The ordinary classifier's RandAugment (Sec. 6.1) draws from the sample's generator,
    so an epoch is the same after a resume, and leaves torch's global generator alone."""
    import numpy as np

    from camflow.data.transforms import rand_augment

    image = (np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)
    spec = {"num_ops": 2, "magnitude": 9}
    state = torch.random.get_rng_state()
    a = rand_augment(image, spec, np.random.default_rng(5))
    assert torch.equal(state, torch.random.get_rng_state())
    assert np.array_equal(a, rand_augment(image, spec, np.random.default_rng(5)))
    assert a.shape == image.shape and a.dtype == np.uint8
    outs = {rand_augment(image, spec, np.random.default_rng(s)).tobytes() for s in range(6)}
    assert len(outs) > 3


def test_randaugment_takes_a_read_only_image_without_a_warning() -> None:
    """Images decoded by PIL are read-only: RandAugment copies such an image instead of
    handing torch a non-writable array (a UserWarning from every DataLoader worker).  In a
    fresh process: torch gives that warning once per process."""
    import subprocess
    import sys

    code = ("import numpy as np\n"
            "from camflow.data.transforms import rand_augment\n"
            "image = np.zeros((8, 8, 3), np.uint8)\n"
            "image.flags.writeable = False\n"
            "rand_augment(image, {'num_ops': 2, 'magnitude': 9}, np.random.default_rng(0))\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-500:]
