"""Score calibration against ground truth: matching, AUROC, reliability and ECE on hand-made cases."""

import numpy as np
import pytest

from pipelines.review.calibration import auroc, calibration_of, reliability, right_or_wrong, score_calibration

NAMES = {1: "circle", 2: "square"}


def box(label, x, y, w, h, score):
    return {"label": label, "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h, "score": score}


def truth(category, x, y, w, h):
    return {"image_id": 7, "category_id": category, "bbox": [x, y, w, h], "segmentation": []}


def test_objects_take_true_ones_in_score_order_by_label_and_iou():
    true = [truth(1, 0, 0, 10, 10), truth(2, 50, 50, 10, 10)]
    predicted = [
        box("circle", 1, 0, 10, 10, 0.6),  # right, but the better-scored duplicate takes the circle first
        box("circle", 0, 0, 10, 10, 0.9),  # right
        box("circle", 50, 50, 10, 10, 0.8),  # on the square, wrong label
        box("square", 56, 50, 10, 10, 0.7),  # IoU 4/16 = 0.25 < 0.5: wrong
        box("square", 0, 0, 1, 1, None),  # unscored: left out
    ]
    pairs = right_or_wrong(predicted, true, NAMES, "boxes", (100, 100))
    assert pairs == [(0.9, True), (0.8, False), (0.7, False), (0.6, False)]


def test_auroc_counts_ties_half_and_needs_both_kinds():
    assert auroc(np.array([0.9, 0.8, 0.1]), np.array([True, True, False])) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert auroc(np.array([0.2, 0.9, 0.4]), np.array([True, False, False])) == 0.0
    assert auroc(np.array([0.3]), np.array([True])) is None


def test_reliability_bins_and_the_expected_calibration_error():
    scores = np.array([0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    right = np.array([False, True, True, True, True, False])
    table, error = reliability(scores, right)
    assert [row["objects"] for row in table] == [1, 1, 4]
    assert [row["fraction_right"] for row in table] == [0.0, 1.0, 0.75]
    assert error == pytest.approx((0.05 + 0.85 + 4 * 0.2) / 6)


def test_a_perfectly_calibrated_set_has_no_error_and_the_figures_name_both_medians():
    pairs = [(1.0, True)] * 3 + [(0.0, False)] * 2
    figures = calibration_of(pairs)
    assert figures["objects"] == 5 and figures["wrong"] == 2 and figures["auroc"] == 1.0
    assert figures["expected_calibration_error"] == 0.0
    assert (figures["median_score_right"], figures["median_score_wrong"]) == (1.0, 0.0)


def test_boxes_only_truth_scores_boxes_and_skips_masks():
    ground_truth = {"images": [{"id": 7, "width": 100, "height": 100, "file_name": "a.png"}],
                    "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}],
                    "annotations": [truth(1, 0, 0, 10, 10)]}
    row = {"task": "segment", "source_uri": "file:///x/a.png", "boxes": [box("circle", 0, 0, 10, 10, 0.9)],
           "masks": [{**box("circle", 0, 0, 10, 10, 0.9), "rle": {"size": [100, 100], "counts": "PPYo1"}}]}
    report = score_calibration([row], {"segment": ground_truth}, lambda uri: 7)
    assert set(report) == {"segment_boxes"} and report["segment_boxes"]["objects"] == 1
