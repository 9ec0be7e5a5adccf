"""P-NOC Table 6's P. scoring: saliency + priors → semantic map → confusion, by hand."""

from __future__ import annotations

import numpy as np

from camflow.evaluate import ConfusionMatrix
from camflow.saliency import gt_prior_map, saliency_semantic_map

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
