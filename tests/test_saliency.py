"""P-NOC Table 6's P. scoring: saliency + priors → semantic map → confusion, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from camflow.cache import (
    CamCache,
    CamCacheWriter,
    SaliencyCache,
    SaliencyCacheWriter,
    open_cache,
)
from camflow.data.voc import SyntheticDataset
from camflow.evaluate import ConfusionMatrix
from camflow.io import CamflowInputError
from camflow.saliency import (
    SaliencyFolder,
    evaluate_saliency,
    gt_prior_map,
    saliency_semantic_map,
)
from fixtures import make_synthetic_fixture

SAL = np.array([[0.9, 0.9, 0.2], [0.9, 0.6, 0.1]], np.float32)
GT = np.array([[1, 2, 0], [0, 2, 255]], np.uint8)


def test_semantic_map_and_its_confusion_by_hand() -> None:
    cams = np.array([[[0.8, 0.2, 0.9], [0.1, 0.0, 0.0]],      # class 1
                     [[0.1, 0.7, 0.0], [0.3, 0.0, 0.0]]],     # class 2
                    np.float32)
    pred = saliency_semantic_map(SAL, np.array([1, 2]), cams, threshold=0.5)
    # (0,2) is not salient: background despite class 1's 0.9; (1,1) salient, no CAM: 0
    np.testing.assert_array_equal(pred, [[1, 2, 0], [2, 0, 0]])
    conf = ConfusionMatrix(3).update(pred, GT).matrix
    # gt 0: (0,2)→0, (1,0)→2; gt 1: (0,0)→1; gt 2: (0,1)→2, (1,1)→0; (1,2) ignored
    np.testing.assert_array_equal(conf, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])


def test_gt_priors_count_salient_annotated_pixels_as_right() -> None:
    pred = gt_prior_map(SAL, GT, threshold=0.5)
    # salient + class: its class; salient + background (1,0): the largest class (2);
    # not salient: background
    np.testing.assert_array_equal(pred, [[1, 2, 0], [2, 2, 0]])
    conf = ConfusionMatrix(3).update(pred, GT).matrix
    np.testing.assert_array_equal(conf, [[1, 0, 1], [0, 1, 0], [0, 0, 2]])
    assert not gt_prior_map(SAL, np.zeros_like(GT), 0.5).any()


def test_a_saliency_folder_names_what_is_missing_or_wrong(tmp_path) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    folder = tmp_path / "sal"
    folder.mkdir()
    grey = np.zeros((16, 24), np.uint8)
    grey[2:8, 2:8] = 255
    Image.fromarray(grey).save(folder / "syn_0000.png")
    Image.fromarray(grey[:8]).save(folder / "syn_0001.png")
    source = SaliencyFolder(folder, dataset)
    with pytest.raises(CamflowInputError, match="no map for 1 of 3 images: 'syn_0002'"):
        source.check(["syn_0000", "syn_0001", "syn_0002"])
    sal = source.read("syn_0000")
    assert sal.dtype == np.float32 and sal.max() == 1.0 and sal[0, 0] == 0.0
    with pytest.raises(CamflowInputError, match=r"syn_0001.*24x8, the image 24x16"):
        source.read("syn_0001")
    (folder / "syn_0002.png").write_bytes(b"not a png")
    with pytest.raises(CamflowInputError, match="syn_0002.*corrupt"):
        source.read("syn_0002")


def test_saliency_cache_round_trip_and_kind(tmp_path) -> None:
    sal = np.zeros((6, 9), np.float32)
    sal[:4, :4] = 1.0
    path = tmp_path / "saliency.h5"
    with SaliencyCacheWriter(path, {"method": "c2am"}) as writer:
        writer.add("a", sal)
    with SaliencyCache(path) as cache:
        np.testing.assert_array_equal(cache.saliency("a"), sal)
        # stride 4: each 4×4 block's mean (the grid covers the padded 8×12 image)
        np.testing.assert_allclose(cache.saliency("a", "stride4"), [[1, 0, 0], [0, 0, 0]])
        assert cache.class_names == ["background", "salient"]
    assert isinstance(open_cache(path), SaliencyCache)
    with pytest.raises(CamflowInputError, match="holds saliency, not cams"):
        CamCache(path).read("a")
    with pytest.raises(CamflowInputError, match="'b'.*expected H×W"), \
            SaliencyCacheWriter(tmp_path / "bad.h5") as writer:
        writer.add("b", sal[None])
    assert not (tmp_path / "bad.h5").exists()


def test_evaluate_saliency_with_priors_and_with_the_ground_truth(tmp_path) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    ids = dataset.ids("train")
    sal_path, cam_path = tmp_path / "sal.h5", tmp_path / "cams.h5"
    with SaliencyCacheWriter(sal_path) as sal_w, \
            CamCacheWriter(cam_path, dataset.class_names) as cam_w:
        for image_id in ids:
            mask = dataset.load_mask(image_id, "train")
            sal_w.add(image_id, ((mask > 0) & (mask < 255)).astype(np.float32))
            keys = np.unique(mask[(mask > 0) & (mask < 255)])
            cams = np.stack([(mask == k).astype(np.float32) for k in keys])
            cam_w.add(image_id, keys, stride4=cams[:, ::4, ::4], full=cams)
    with SaliencyCache(sal_path) as sal, CamCache(cam_path) as cams:
        with_priors = evaluate_saliency(sal, cams, dataset, "train", 0.5, progress=False)
        with_gt = evaluate_saliency(sal, None, dataset, "train", 0.5, progress=False)
    assert with_priors["kind"] == "saliency" and with_priors["miou"] == 1.0
    assert with_gt["miou"] == 1.0 and with_gt["provenance"]["priors"] == "ground truth"
    # a saliency map that misses everything: only background is right
    with SaliencyCacheWriter(tmp_path / "none.h5") as w:
        for image_id in ids:
            w.add(image_id, np.zeros(dataset.load_image(image_id).shape[:2], np.float32))
    with SaliencyCache(tmp_path / "none.h5") as sal:
        blind = evaluate_saliency(sal, None, dataset, "train", 0.5, progress=False)
    ious = {c["class"]: c["iou"] for c in blind["per_class"]}
    assert ious["circle"] == 0.0 and ious["square"] == 0.0 and 0 < ious["background"] < 1
