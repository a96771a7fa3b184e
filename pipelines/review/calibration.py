"""Whether scores read as the chance that an object is right, measured against ground truth.

Each predicted object is right when a true object of its label, not yet taken, overlaps it at IoU >= 0.5;
within an image and task, objects take true ones in order of score, highest first (COCO's matching at
one threshold). From the (score, right) pairs: the AUROC of the score between right and wrong objects
(0.5: no better than chance), the median scores of each, and a reliability table (objects binned by
score: mean score against the fraction right) with its expected calibration error. Pure: rows and COCO
dicts in, figures out.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from pycocotools import mask as mask_utils

RIGHT_IOU = 0.5
RELIABILITY_BINS = 10


def truth_region(annotation: dict, height: int, width: int):
    """A true object as pycocotools' iou takes it: its box, or its mask as RLE."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):  # polygons
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def right_or_wrong(predicted: list[dict], truth: list[dict], names: dict[int, str], field: str,
                   image_hw: tuple[int, int]) -> list[tuple[float, bool]]:
    """(score, right) for one image's predicted `boxes` or `masks` (LabelRow dicts) against its true
    annotations (COCO dicts; `names`: category id -> label). Unscored objects are left out."""
    scored = sorted((item for item in predicted if item["score"] is not None), key=lambda item: -item["score"])
    taken = [False] * len(truth)
    pairs = []
    for item in scored:
        candidates = [k for k, a in enumerate(truth) if not taken[k] and names[a["category_id"]] == item["label"]]
        best, best_iou = None, RIGHT_IOU
        if candidates:
            if field == "masks":
                ours = [{"size": list(item["rle"]["size"]), "counts": item["rle"]["counts"]}]
                theirs = [truth_region(truth[k], *image_hw) for k in candidates]
            else:
                ours = [[item["x_min"], item["y_min"], item["x_max"] - item["x_min"], item["y_max"] - item["y_min"]]]
                theirs = [truth[k]["bbox"] for k in candidates]
            ious = np.ravel(mask_utils.iou(ours, theirs, [0] * len(theirs)))
            for k, iou in zip(candidates, ious):
                if iou >= best_iou:
                    best, best_iou = k, iou
        if best is not None:
            taken[best] = True
        pairs.append((float(item["score"]), best is not None))
    return pairs


def auroc(scores: np.ndarray, right: np.ndarray) -> float | None:
    """The probability that a right object outscores a wrong one (ties count half); None without both."""
    n_right, n_wrong = int(right.sum()), int((~right).sum())
    if not n_right or not n_wrong:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # 1-based, ties share their mean rank
    ranks = average_rank[inverse]
    return float((ranks[right].sum() - n_right * (n_right + 1) / 2) / (n_right * n_wrong))


def reliability(scores: np.ndarray, right: np.ndarray, bins: int = RELIABILITY_BINS) -> tuple[list[dict], float]:
    """Objects in equal-width score bins: per non-empty bin its count, mean score and fraction right;
    and the expected calibration error, the count-weighted mean gap between the two."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean_score, fraction_right = float(scores[inside].mean()), float(right[inside].mean())
        table.append({"bin": [round(float(edges[b]), 2), round(float(edges[b + 1]), 2)], "objects": int(inside.sum()),
                      "mean_score": round(mean_score, 4), "fraction_right": round(fraction_right, 4)})
        error += inside.sum() / len(scores) * abs(mean_score - fraction_right)
    return table, float(error)


def calibration_of(pairs: list[tuple[float, bool]]) -> dict:
    """The figures for one task's (score, right) pairs."""
    scores = np.array([score for score, _ in pairs], dtype=np.float64)
    right = np.array([ok for _, ok in pairs], dtype=bool)
    if not len(scores):
        return {"objects": 0, "wrong": 0}
    table, error = reliability(scores, right)
    return {
        "objects": len(scores),
        "wrong": int((~right).sum()),
        "auroc": auroc(scores, right),
        "median_score_right": float(np.median(scores[right])) if right.any() else None,
        "median_score_wrong": float(np.median(scores[~right])) if (~right).any() else None,
        "expected_calibration_error": round(error, 4),
        "reliability": table,
    }


def score_calibration(rows: list[dict], truth_by_task: dict[str, dict], image_id_of) -> dict:
    """Per scored kind of object (`detect`, `segment_boxes`, `segment_masks`, as far as rows and truth
    have them): `calibration_of` its objects over every row whose image the ground truth knows.
    `truth_by_task`: the COCO dict each task is scored against; `image_id_of`: row -> image id."""
    kinds = {"detect": ("detect", "boxes"), "segment_boxes": ("segment", "boxes"),
             "segment_masks": ("segment", "masks")}
    report = {}
    for kind, (task, field) in kinds.items():
        truth = truth_by_task.get(task)
        task_rows = [row for row in rows if row["task"] == task and row.get(field)]
        if truth is None or not task_rows:
            continue
        annotations = truth["annotations"]
        if field == "masks":
            annotations = [a for a in annotations if a.get("segmentation")]
            if not annotations:
                continue
        names = {c["id"]: c["name"] for c in truth["categories"]}
        sizes = {image["id"]: (image["height"], image["width"]) for image in truth["images"]}
        by_image = defaultdict(list)
        for annotation in annotations:
            by_image[annotation["image_id"]].append(annotation)
        pairs = []
        for row in task_rows:
            image_id = image_id_of(row)
            if image_id is not None:
                pairs += right_or_wrong(row[field], by_image[image_id], names, field, sizes[image_id])
        report[kind] = calibration_of(pairs)
    return report


def format_calibration(report: dict) -> list[str]:
    """One line per kind of object: AUROC, medians and calibration error."""
    lines = []
    for kind, figures in report.items():
        if not figures["objects"]:
            continue
        auc = "-" if figures["auroc"] is None else f"{figures['auroc']:.3f}"
        medians = " / ".join("-" if figures[key] is None else f"{figures[key]:.3f}"
                             for key in ("median_score_right", "median_score_wrong"))
        lines.append(f"{kind:<14} scores: AUROC right vs wrong {auc}  median right / wrong {medians}  "
                     f"ECE {figures['expected_calibration_error']:.3f}  ({figures['wrong']} wrong of "
                     f"{figures['objects']})")
    return lines
