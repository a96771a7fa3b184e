"""Label Studio's JSON export as ground truth: rectangles, brushes and text areas back into COCO by control
name, scored by evaluate exactly as the objects they were made from."""

import copy

import numpy as np
import pytest

from pipelines.review.evaluate import evaluate_rows
from pipelines.review.export.brush import brush_rle_to_mask, mask_to_brush_rle
from pipelines.review.ground_truth import coco_from_labelstudio, final_annotation, read_ground_truth


def test_accepted_predictions_score_perfectly_as_ground_truth(reviewed):
    rows, tasks = reviewed
    truth = coco_from_labelstudio(tasks)
    # each image keeps the rows' image_id from the task's data, which joins first
    assert {image["row_image_id"] for image in truth["images"]} == {row["image_id"] for row in rows}
    report = evaluate_rows(rows, truth)
    assert report["unknown_images"] == 0
    for key in ("detect", "segment_boxes", "segment_masks"):
        if key in report:
            assert report[key]["mAP_50"] == pytest.approx(1.0), (key, report[key])
    assert report["segment_masks"]["objects_without_mask"] >= 0
    if "caption" in report:
        assert report["caption"]["exact_match"] == 1.0


def test_a_deleted_box_and_an_edited_caption_show_in_the_scores(reviewed):
    rows, tasks = reviewed
    tasks = copy.deepcopy(tasks)
    # the first task with boxes (task order follows image ids, hashes of temporary paths)
    result = next(t for t in tasks if any(r["from_name"] == "detect" for r in t["annotations"][0]["result"])
                  )["annotations"][0]["result"]
    detect = [r for r in result if r["from_name"] == "detect"]
    result.remove(detect[0])
    result.append({**detect[0], "id": "added", "value": {**detect[0]["value"], "x": 0.0, "y": 0.0}})
    texts = [r for r in result if r["type"] == "textarea"]
    if texts:
        texts[0]["value"] = {"text": ["something else"]}
    report = evaluate_rows(rows, coco_from_labelstudio(tasks))
    assert report["detect"]["mAP_50"] < 1.0
    if texts:
        assert report["caption"]["exact_match"] < 1.0


def test_the_latest_uncancelled_annotation_counts_and_unreviewed_tasks_are_not_truth():
    task = {"annotations": [{"id": 1, "updated_at": "2026-01-02", "result": []},
                            {"id": 2, "updated_at": "2026-01-03", "was_cancelled": True, "result": []},
                            {"id": 3, "updated_at": "2026-01-01", "result": []}]}
    assert final_annotation(task)["id"] == 1
    assert coco_from_labelstudio([{"data": {"image": "a.png"}, "annotations": []}])["images"] == []


def test_brush_rle_decodes_back_to_the_mask_it_was_made_from(brush):
    mask = np.zeros((13, 17), bool)
    mask[2:9, 3:15] = True
    mask[5, 0] = True
    rle = mask_to_brush_rle(mask)
    assert (brush_rle_to_mask(rle, 13, 17) == mask).all()
    # and a Label Studio-encoded brush (the SDK's encoder) reads the same
    drawn = brush.encode_rle(np.repeat(np.where(mask, 255, 0).astype(np.uint8).ravel(), 4))
    assert (brush_rle_to_mask(drawn, 13, 17) == mask).all()
    with pytest.raises(ValueError, match="values"):
        brush_rle_to_mask(rle, 12, 17)


def test_coco_passes_through_and_anything_else_is_refused():
    coco = {"images": [], "annotations": [], "categories": []}
    assert read_ground_truth(coco) is coco
    with pytest.raises(ValueError, match="COCO"):
        read_ground_truth({"tasks": []})



def test_annotation_ids_from_0_are_renumbered_so_pycocotools_can_match_the_first_object():
    # Label Studio's COCO export numbers from 0; pycocotools reads a match to annotation 0 as no match.
    truth = {"images": [{"id": 0, "file_name": "a.png", "width": 100, "height": 100}],
             "categories": [{"id": 0, "name": "circle"}],
             "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [10, 10, 20, 20], "area": 400,
                              "iscrowd": 0}]}
    row = {"source_uri": "a.png", "task": "detect", "status": "ok", "text": None, "masks": None,
           "boxes": [{"label": "circle", "x_min": 10, "y_min": 10, "x_max": 30, "y_max": 30, "score": 0.9}]}
    assert evaluate_rows([row], read_ground_truth(truth))["detect"]["mAP_50"] == pytest.approx(1.0)
    assert [a["id"] for a in read_ground_truth(truth)["annotations"]] == [1]
