"""The reviewed labels as an annotation dataset: the predictions' rows, with the review's objects and texts."""


import pytest

from pipelines.review.evaluate import ImageIndex, evaluate_rows
from pipelines.review.ground_truth import coco_from_labelstudio
from pipelines.review.reviewed import reviewed_rows, write_rows
from pipelines.storage.output import read_annotations
from tests.jobs import load_job


def test_the_reviewed_labels_become_a_dataset_that_joins_the_predictions_and_scores_as_the_review(
        reviewed, tmp_path):
    rows, tasks = reviewed
    truth = coco_from_labelstudio(tasks)
    out = tmp_path / "reviewed"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("")
    assert load_job("reviewed").main(["--predictions", "none", "--ground-truth", "none.json",
                                      "--output", str(tmp_path / "taken")]) == 2  # a non-empty output is refused
    written = reviewed_rows(rows, truth, ImageIndex(truth["images"]), "label-studio:test", "review-1")
    write_rows(written, str(out))
    back = read_annotations(str(out)).to_pylist()
    keys = {(r["image_id"], r["task"], r["prompt"]) for r in back}
    assert keys == {(r["image_id"], r["task"], r["prompt"]) for r in rows if r["width"] is not None}
    assert {r["model"] for r in back} == {"label-studio:test"} and all(r["status"] == "ok" for r in back)
    assert all(box["score"] is None for r in back for box in r["boxes"] or [])
    report = evaluate_rows(back, truth)  # the review scored against itself: perfect, masks included
    assert report["detect"]["mAP_50"] == report["segment_masks"]["mAP_50"] == pytest.approx(1.0)
