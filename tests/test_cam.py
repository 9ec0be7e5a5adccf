"""The `cam` CAM source: TTA fusion and normalisation against hand-computed cases."""

import numpy as np
import pytest
import torch
from PIL import Image

from camflow.cache import CamCache
from camflow.data.transforms import normalize
from camflow.data.voc import SyntheticDataset
from camflow.methods.cam import (
    fuse_tta,
    make_cams,
    max_normalize,
    strided_size,
)
from fixtures import make_synthetic_fixture


def position_weighted(x: torch.Tensor) -> torch.Tensor:
    """A CAM function that is *not* flip-equivariant: channel 0 times column index + 1."""
    w = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    return x[:, :1].clamp(min=0) * w


def test_flip_is_flipped_back_before_summing() -> None:
    # cam(x) + flip(cam(flip(x))) = x * (w + flip(w)) = x * (W + 1) for w = 1..W.
    image = np.random.default_rng(0).integers(0, 256, (2, 4, 3), dtype=np.uint8)
    x = torch.from_numpy(normalize(image))[None]
    (fused,) = fuse_tta(position_weighted, [image], scales=[1.0], flip=True,
                        outputs=[((2, 4), 1)])
    assert torch.allclose(fused, x[:, :1].clamp(min=0) * 5)


def test_scales_are_resized_to_common_size_and_summed() -> None:
    image = np.full((8, 8, 3), 128, dtype=np.uint8)
    c = torch.from_numpy(normalize(image))[:2, 0, 0]
    ident = lambda t: t[:, :2]  # noqa: E731
    fused, small = fuse_tta(ident, [image], scales=[1.0, 0.5, 2.0], flip=True,
                            outputs=[((8, 8), 1), ((2, 2), 1)])
    # constant image: each of 3 scales gives 2c everywhere, at any output size
    assert torch.allclose(fused, (6 * c)[None, :, None, None].expand(1, 2, 8, 8))
    assert torch.allclose(small, (6 * c)[None, :, None, None].expand(1, 2, 2, 2))


def test_scales_resize_the_uint8_image_with_pil_bicubic() -> None:
    """IRN's VOC12ClassificationDatasetMSF: pil_rescale(img, s, order=3), then normalise."""
    image = np.random.default_rng(1).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    seen = []
    fuse_tta(lambda t: seen.append(t) or t[:, :1], [image], scales=[0.5, 1.5], flip=False,
             outputs=[((10, 14), 1)])
    for x, scale, size in zip(seen, (0.5, 1.5), ((7, 5), (21, 15)), strict=True):
        expected = normalize(np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)))
        assert np.array_equal(x[0].numpy(), expected), scale


def test_full_resolution_map_is_rounded_up_to_the_grid_and_cropped() -> None:
    """IRN (make_cam.py): a 20×20 image's 2×2 stride-16 map is resized to 32×32 and cropped,
    so column j reads the map at (j + 0.5) / 16 − 0.5; resized straight to 20 it would read
    (j + 0.5) / 10 − 0.5."""
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    step = lambda t: torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(len(t), 1, 2, 2)  # noqa: E731
    (irn,) = fuse_tta(step, [image], [1.0], False, [((20, 20), 16)])
    (straight,) = fuse_tta(step, [image], [1.0], False, [((20, 20), 1)])
    assert irn.shape == (1, 1, 20, 20)
    assert irn[0, 0, 0, 9].item() == pytest.approx(0.09375)
    assert irn[0, 0, 0, 15].item() == pytest.approx(0.46875)
    assert straight[0, 0, 0, 9].item() == pytest.approx(0.45)
    assert straight[0, 0, 0, 15].item() == 1.0


def test_max_normalize_divides_each_class_by_its_own_max() -> None:
    cams = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[0.5, 0.25], [0.0, 0.0]]])
    out = max_normalize(cams)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]), atol=1e-5)
    assert torch.allclose(out[1], torch.tensor([[1.0, 0.5], [0.0, 0.0]]), atol=1e-4)


def test_strided_size_rounds_up() -> None:
    assert strided_size((30, 41), 4) == (8, 11)


class FakeModel(torch.nn.Module):
    """CAM of class k = (k+1) × mean intensity at stride 2, so values are predictable."""

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        base = torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True) + 3, 2)
        return torch.cat([base * (k + 1) for k in range(2)], dim=1)


def test_make_cams_keeps_only_present_classes_normalised(tmp_path) -> None:
    root = make_synthetic_fixture(tmp_path)
    dataset = SyntheticDataset(root)
    out = tmp_path / "cams.h5"
    source = lambda images, classes: FakeModel().cam(images)[:, classes]  # noqa: E731
    make_cams(source, dataset, "train", out, scales=[1.0, 0.5], flip=True,
              batch_size=2, grid=16, device=torch.device("cpu"), progress=False)
    labels = dataset.image_labels("train")
    with CamCache(out) as cache:
        assert sorted(cache.ids) == sorted(dataset.ids("train"))
        assert cache.provenance["scales"] == [1.0, 0.5]
        for image_id in dataset.ids("train"):
            keys, full = cache.read(image_id)
            _, small = cache.read(image_id, "stride4")
            h, w = dataset.load_image(image_id).shape[:2]
            assert keys.tolist() == list(labels[image_id])
            assert full.shape == (len(keys), h, w)
            assert small.shape == (len(keys), *strided_size((h, w), 4))
            assert np.allclose(full.max(axis=(1, 2)), 1.0, atol=2e-3)
            assert full.min() >= 0


@pytest.mark.parametrize("device_rescale", [False, True])
def test_make_cams_writes_each_image_its_own_fused_maps(tmp_path, device_rescale) -> None:
    """The cache holds, under each id, the TTA fusion of that image (``fuse_tta``, PIL's
    rescaling): the scales travel packed in one buffer per image (``MultiScaleImages``/
    ``unpacked``), or the image alone and rescaled on the device (``device_rescale``: the
    same maps bit for bit), and a batch (one image here) is written after the next one is
    computed (``_HostMaps``)."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    out = tmp_path / "cams.h5"

    def source(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return position_weighted(images).repeat(1, 20, 1, 1)[:, classes] * (classes + 1)[
            None, :, None, None]

    scales = [1.0, 0.5, 1.5]
    make_cams(source, dataset, "train", out, scales=scales, flip=True, batch_size=1, grid=16,
              device=torch.device("cpu"), progress=False, dtype="float32",
              device_rescale=device_rescale)
    labels = dataset.image_labels("train")
    with CamCache(out) as cache:
        for image_id in dataset.ids("train"):
            image = dataset.load_image(image_id)
            h, w = image.shape[:2]
            classes = torch.as_tensor([c - 1 for c in labels[image_id]])
            full, small = fuse_tta(lambda x, c=classes: source(x, c), [image], scales, True,
                                   [((h, w), 16), (strided_size((h, w), 4), 1)])
            np.testing.assert_array_equal(cache.read(image_id)[1], max_normalize(full)[0],
                                          err_msg=image_id)
            np.testing.assert_array_equal(cache.read(image_id, "stride4")[1],
                                          max_normalize(small)[0], err_msg=image_id)
