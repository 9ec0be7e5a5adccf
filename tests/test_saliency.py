"""P-NOC Table 6's P. scoring: saliency + priors → semantic map → confusion, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from camflow.cache import (
    CamCache,
    CamCacheWriter,
    LabelCache,
    SaliencyCache,
    SaliencyCacheWriter,
    open_cache,
)
from camflow.data.voc import SyntheticDataset
from camflow.evaluate import ConfusionMatrix
from camflow.io import CamflowInputError, read_label_png
from camflow.refine.affinity_labels import make_affinity_labels
from camflow.saliency import (
    SaliencyFolder,
    evaluate_saliency,
    gt_prior_map,
    pseudo_saliency_masks,
    saliency_method,
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


def _caches(tmp_path, dataset, saliency_of):
    """A saliency cache (``saliency_of(mask)``) and a CAM cache of the ground truth."""
    sal_path, cam_path = tmp_path / "sal.h5", tmp_path / "cams.h5"
    with SaliencyCacheWriter(sal_path) as sal_w, \
            CamCacheWriter(cam_path, dataset.class_names) as cam_w:
        for image_id in dataset.ids("train"):
            mask = dataset.load_mask(image_id, "train")
            sal_w.add(image_id, saliency_of(mask))
            keys = np.unique(mask[(mask > 0) & (mask < 255)])
            cams = np.stack([(mask == k).astype(np.float32) for k in keys])
            cam_w.add(image_id, keys, stride4=cams[:, ::4, ::4], full=cams)
    return sal_path, cam_path


def test_the_saliency_evaluation_sweeps_its_thresholds_and_keeps_the_best(tmp_path) -> None:
    """Objects at saliency 0.3, background at 0.2: with the ground truth as the priors only
    a threshold in (0.2, 0.3] separates them; the record keeps that one and every
    threshold's mIoU."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    sal_path, _ = _caches(
        tmp_path, dataset, lambda m: np.where((m > 0) & (m < 255), 0.3, 0.2).astype(np.float32))
    with SaliencyCache(sal_path) as sal:
        record = evaluate_saliency(sal, None, dataset, "train", [0.1, 0.25, 0.5],
                                   progress=False)
    assert record["threshold"] == 0.25 and record["miou"] == 1.0
    assert record["sweep"]["thresholds"] == [0.1, 0.25, 0.5]
    assert record["sweep"]["miou"][1] == 1.0
    assert max(record["sweep"]["miou"][0], record["sweep"]["miou"][2]) < 1.0


def test_pseudo_saliency_masks_threshold_the_maps(tmp_path) -> None:
    """Without the CRF a mask is exactly the map thresholded at `threshold`."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    sal_path, _ = _caches(tmp_path, dataset,
                          lambda m: np.where((m > 0) & (m < 255), 0.25, 0.15).astype(np.float32))
    with SaliencyCache(sal_path) as sal:
        out = pseudo_saliency_masks(sal, dataset, "train", 0.2, False, tmp_path / "masks")
    for image_id in dataset.ids("train"):
        mask = dataset.load_mask(image_id, "train")
        np.testing.assert_array_equal(read_label_png(out / f"{image_id}.png"),
                                      ((mask > 0) & (mask < 255)).astype(np.uint8))


def test_a_folder_of_external_maps_becomes_a_saliency_cache(tmp_path) -> None:
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for image_id in dataset.ids("train"):
        mask = dataset.load_mask(image_id, "train")
        Image.fromarray(np.where((mask > 0) & (mask < 255), 255, 0).astype(np.uint8)).save(
            folder / f"{image_id}.png")
    method = saliency_method("folder")
    assert not method.learned
    method.infer({"method": "folder", "folder": str(folder)}, dataset, "train", {}, None,
                 str(tmp_path / "sal.h5"), torch.device("cpu"), 0)
    with SaliencyCache(tmp_path / "sal.h5") as sal:
        for image_id in dataset.ids("train"):
            mask = dataset.load_mask(image_id, "train")
            np.testing.assert_array_equal(sal.saliency(image_id),
                                          ((mask > 0) & (mask < 255)).astype(np.float32))
    (folder / f"{dataset.ids('train')[0]}.png").unlink()
    with pytest.raises(CamflowInputError, match="no map for 1 of"):
        method.infer({"method": "folder", "folder": str(folder)}, dataset, "train", {}, None,
                     str(tmp_path / "other.h5"), torch.device("cpu"), 0)
    assert not (tmp_path / "other.h5").exists()


def test_saliency_affinity_labels_read_the_saliency_cache(tmp_path) -> None:
    """The `saliency` style of make_affinity_labels: background where the saliency is low,
    the class where the CAM is strong, 255 where salient without a strong CAM."""
    dataset = SyntheticDataset(make_synthetic_fixture(tmp_path))
    salient = lambda m: ((m > 0) & (m < 255)).astype(np.float32)  # noqa: E731
    sal_path, cam_path = _caches(tmp_path, dataset, salient)
    # weak CAMs (0.2 < fg 0.4) on the first image only: salient but uncertain
    weak = tmp_path / "weak.h5"
    first = dataset.ids("train")[0]
    with CamCache(cam_path) as cams, CamCacheWriter(weak, dataset.class_names) as w:
        for image_id in dataset.ids("train"):
            keys, maps = cams.read(image_id)
            scale = 0.2 if image_id == first else 1.0
            w.add(image_id, keys, stride4=scale * maps[:, ::4, ::4], full=scale * maps)
    params = {"method": "saliency", "saliency": "x", "fg_threshold": 0.4, "bg_threshold": 0.1,
              "crf": False}
    with CamCache(weak) as cams, SaliencyCache(sal_path) as sal:
        make_affinity_labels(cams, dataset, "train", params, tmp_path / "labels.h5",
                             progress=False, saliency=sal)
        with pytest.raises(CamflowInputError, match="a saliency cache is needed"):
            make_affinity_labels(cams, dataset, "train", params, tmp_path / "x.h5",
                                 progress=False)
    with LabelCache(tmp_path / "labels.h5") as labels:
        for image_id in dataset.ids("train"):
            mask = dataset.load_mask(image_id, "train")
            obj = (mask > 0) & (mask < 255)
            expected = np.where(obj, 255 if image_id == first else mask, 0)
            np.testing.assert_array_equal(labels.read(image_id)[1], expected)
