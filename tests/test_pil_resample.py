"""PIL's bicubic resize as integer tensor operations (camflow.data.pil_resample): equal to
the installed Pillow, bit for bit."""

import numpy as np
import pytest
import torch
from PIL import Image

from camflow.data import pil_resample
from camflow.data.pil_resample import matches_pillow, pillow_pass_order, resize_bicubic


def pil(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))


def test_equals_pillow_on_random_sizes_both_ways_and_both_pass_orders() -> None:
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        size = (int(rng.integers(1, 140)), int(rng.integers(1, 140)))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        orders.add(pil_resample._height_first(pillow_pass_order(), (h, w), size))
        got = resize_bicubic(torch.from_numpy(image), size).numpy()
        np.testing.assert_array_equal(got, pil(image, size), err_msg=f"{(h, w)} -> {size}")
    # under Pillow 13 both orders occur among these sizes; before it only width first
    assert True in orders or pillow_pass_order() == "width first"


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0])
def test_a_batch_equals_pillow_image_by_image_at_irn_scales(scale: float) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 75, 100, 3), dtype=np.uint8)
    size = (round(75 * scale), round(100 * scale))
    got = resize_bicubic(torch.from_numpy(images), size).numpy()
    for image, out in zip(images, got, strict=True):
        np.testing.assert_array_equal(out, pil(image, size))


def test_the_installed_pillow_is_matched_and_its_pass_order_probed() -> None:
    assert pillow_pass_order() is not None
    assert matches_pillow()
    # the probes tell the two orders apart (else the probe could not choose)
    for in_size, size in pil_resample._ORDER_PROBES:
        probe = torch.from_numpy(pil_resample._probe(in_size))
        assert not torch.equal(pil_resample._resize(probe, size, "width first"),
                               pil_resample._resize(probe, size,
                                                    "height first where it shrinks most"))


def test_an_unchanged_size_is_the_image_and_floats_are_refused() -> None:
    image = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8)
    assert torch.equal(resize_bicubic(image, (5, 7)), image)
    with pytest.raises(TypeError, match="uint8"):
        resize_bicubic(image.float(), (3, 3))
