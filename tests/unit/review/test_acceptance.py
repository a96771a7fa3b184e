"""The acceptance report on a hand-made review: each kind of edit counted once, per class, texts by edit distance,
and the F1-best --min-score."""

import pytest

from pipelines.review.acceptance import acceptance, best_min_score, edit_distance, format_acceptance

CATEGORIES = [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"}]


def box(label, x, y, w, h, score):
    return {"label": label, "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h, "score": score}


def final(category, x, y, w, h, task="detect"):
    return {"image_id": 1, "category_id": category, "bbox": [x, y, w, h], "task": task, "segmentation": []}


def review():
    rows = [
        {"source_uri": "a.png", "task": "detect", "boxes": [
            box("circle", 0, 0, 100, 100, 0.9),  # kept: the final object is the same box
            box("circle", 200, 0, 100, 100, 0.8),  # adjusted: moved 20 px (IoU 0.67)
            box("circle", 400, 0, 100, 100, 0.7),  # relabelled to square
            box("square", 600, 0, 100, 100, 0.2),  # deleted
        ], "text": None},
        {"source_uri": "a.png", "task": "caption", "boxes": None, "text": "a red circle"},
    ]
    truth = {"categories": CATEGORIES, "images": [{"id": 1, "file_name": "a.png"}],
             "annotations": [final(1, 0, 0, 100, 100), final(1, 220, 0, 100, 100), final(2, 400, 0, 100, 100),
                             final(2, 0, 300, 50, 50)],  # the last one added by hand
             "captions": [{"image_id": 1, "caption": "a red circle and a square"}]}
    return rows, truth


def test_every_kind_of_edit_is_counted_once_and_per_class():
    rows, truth = review()
    report = acceptance(rows, truth, lambda uri: 1)
    detect = report["detect"]
    assert {k: detect[k] for k in ("kept", "adjusted", "relabelled", "deleted", "added")} == {
        "kept": 1, "adjusted": 1, "relabelled": 1, "deleted": 1, "added": 1}
    assert detect["per_class"]["circle"] == {"kept": 1, "adjusted": 1, "relabelled": 1, "deleted": 0, "added": 0}
    assert detect["per_class"]["square"] == {"kept": 0, "adjusted": 0, "relabelled": 0, "deleted": 1, "added": 1}
    assert report["caption"] == {"kept": 0, "edited": 1, "edit_distance": len(" and a square")}
    assert any(line.startswith("detect") and "kept 1" in line for line in format_acceptance(report))


def test_the_best_min_score_drops_what_annotators_deleted_or_relabelled():
    rows, truth = review()
    best = acceptance(rows, truth, lambda uri: 1)["detect"]["best_min_score"]
    # at 0.8: 2 right of 2 kept, of 4 final objects -> F1 2/3; at 0.7 or lower precision falls
    assert best == {"min_score": 0.8, "f1": pytest.approx(0.6667, abs=1e-4), "precision": 1.0, "recall": 0.5,
                    "pre_labels_kept": 2}
    assert best_min_score([], 3)["min_score"] is None


def test_images_nobody_reviewed_are_left_out():
    rows, truth = review()
    assert acceptance(rows, truth, lambda uri: None) == {}


def test_edit_distance_counts_characters():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("same", "same") == 0
