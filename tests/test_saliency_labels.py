"""P-NOC's saliency-aware affinity labels (David et al. Sec. 5) on a hand-made 6×6 image."""

from __future__ import annotations

import numpy as np

from camflow.refine.affinity_labels import saliency_labels

# columns 0-1: not salient; columns 2-5: salient. Class 3's CAM is strong in rows 0-1,
# class 5's in rows 2-3 (columns 3-5 only: column 2 of those rows has both CAMs weak),
# both weak in rows 4-5.
SALIENCY = np.zeros((6, 6), np.float32)
SALIENCY[:, 2:] = 0.9
CAMS = np.full((2, 6, 6), 0.1, np.float32)
CAMS[0, 0:2, :] = 0.8               # class 3 strong (also over the non-salient columns)
CAMS[1, 2:4, 3:] = 0.7              # class 5 strong
CAMS[0, 2:4, 3:] = 0.5              # class 3 also above δ_fg there, but below class 5
KEYS = np.array([3, 5])
IMAGE = np.zeros((6, 6, 3), np.uint8)


def test_each_case_and_overlap_by_hand() -> None:
    out = saliency_labels(IMAGE, KEYS, CAMS, SALIENCY, fg_threshold=0.3, bg_threshold=0.1,
                          crf=False)
    expected = np.array([
        [0, 0, 3, 3, 3, 3],          # low saliency + strong CAM: background wins
        [0, 0, 3, 3, 3, 3],          # salient + strong CAM: the CAM's class
        [0, 0, 255, 5, 5, 5],        # two strong CAMs: the larger; salient + weak: 255
        [0, 0, 255, 5, 5, 5],
        [0, 0, 255, 255, 255, 255],  # salient + weak CAM: uncertain
        [0, 0, 255, 255, 255, 255],  # low saliency + weak CAM: background
    ], np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_no_class_labels_the_salient_region_uncertain() -> None:
    out = saliency_labels(IMAGE, np.zeros(0, np.int64), CAMS[:0], SALIENCY, crf=False)
    assert set(np.unique(out[:, :2])) == {0} and set(np.unique(out[:, 2:])) == {255}


def test_the_crf_refines_both_maps() -> None:
    # a bright salient square on a dark image whose saliency map spills one pixel outside:
    # the CRF pulls the salient label back to the colour edge
    image = np.zeros((12, 12, 3), np.uint8)
    image[3:9, 3:9] = 255
    saliency = np.zeros((12, 12), np.float32)
    saliency[2:10, 2:10] = 0.9
    cams = np.zeros((1, 12, 12), np.float32)
    cams[0, 3:9, 3:9] = 0.9
    crf = {"bi_sxy": 5, "bi_srgb": 10, "bi_compat": 10, "gt_prob": 0.6}
    raw = saliency_labels(image, np.array([1]), cams, saliency, crf=False)
    refined = saliency_labels(image, np.array([1]), cams, saliency, crf=crf)
    assert (raw == 255).sum() == 64 - 36  # the spilled ring is uncertain without the CRF
    assert (refined[3:9, 3:9] == 1).all()
    assert (refined == 255).sum() < (raw == 255).sum()
