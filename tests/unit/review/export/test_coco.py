"""The COCO export, checked with pycocotools: it loads, and COCOeval scores it against the truth it came from."""

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.review.export import export
from pipelines.review.export.coco import coco_image_id
from pipelines.review.export.source import RowFilter


def quiet(call, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return call(*args)


def test_coco_export_loads_and_scores_perfectly_against_the_truth_it_came_from(labelled, tmp_path):
    dataset, rows, truth = labelled
    output = tmp_path / "coco.json"
    summary = export("coco", str(dataset), str(output))
    exported = quiet(COCO, str(output))
    # detect and segment rows of an image are one COCO image; the unreadable image has none
    assert len(exported.getImgIds()) == len(truth["images"])
    assert [c["name"] for c in exported.loadCats(exported.getCatIds())] == ["circle", "square", "triangle"]
    assert "wrote 6 images" in summary
    # every true object twice (detect box, segment box+mask), with bbox [x, y, w, h] and a score
    assert len(exported.getAnnIds()) == 2 * len(truth["annotations"])
    by_name = {image["file_name"]: image["id"] for image in exported.dataset["images"]}
    truth_ids = {image["id"]: by_name[image["file_name"]] for image in truth["images"]}
    truth_names = {c["id"]: c["name"] for c in truth["categories"]}
    export_cats = {c["name"]: c["id"] for c in exported.dataset["categories"]}
    for ann in truth["annotations"][:5]:
        found = [a for a in exported.dataset["annotations"] if a["image_id"] == truth_ids[ann["image_id"]]
                 and a["bbox"] == ann["bbox"] and a["category_id"] == export_cats[truth_names[ann["category_id"]]]]
        assert len(found) == 2 and all(0 < a["score"] < 1 for a in found)
        (mask,) = [a for a in found if "segmentation" in a]
        assert mask["segmentation"] == ann["segmentation"] and mask["area"] == ann["area"]

    # COCOeval on the export as detections, against the shapes' own ground truth: AP 1.0
    ground_truth = COCO()
    ground_truth.dataset = {**truth, "categories": [{"id": export_cats[c["name"]], "name": c["name"]}
                                                    for c in truth["categories"]]}
    for ann in ground_truth.dataset["annotations"]:
        ann["image_id"] = truth_ids[ann["image_id"]]
        ann["category_id"] = export_cats[truth_names[ann["category_id"]]]
    for image in ground_truth.dataset["images"]:
        image["id"] = by_name[image["file_name"]]
    quiet(ground_truth.createIndex)
    # one kind at a time: each true object is both a detect box and a segment mask
    segment_masks = [dict(a) for a in exported.dataset["annotations"] if "segmentation" in a]
    detect_boxes = [dict(a) for a in exported.dataset["annotations"] if "segmentation" not in a]
    for iou_type, detections in (("bbox", detect_boxes), ("segm", segment_masks)):
        evaluator = COCOeval(ground_truth, quiet(ground_truth.loadRes, detections), iou_type)
        quiet(evaluator.evaluate)
        quiet(evaluator.accumulate)
        quiet(evaluator.summarize)
        assert evaluator.stats[0] == pytest.approx(1.0), iou_type


def test_coco_refuses_text_tasks_and_filters_scores(labelled, tmp_path):
    dataset, rows, _ = labelled
    with pytest.raises(ValueError, match=r"tasks \['caption'\] have none"):
        export("coco", str(dataset), str(tmp_path / "x.json"), RowFilter(tasks=("caption",)))
    export("coco", str(dataset), str(tmp_path / "high.json"), RowFilter(tasks=("detect",), min_score=0.5))
    kept = json.loads((tmp_path / "high.json").read_text())["annotations"]
    expected = [b.score for r in rows if r.task == "detect" for b in r.boxes if b.score >= 0.5]
    assert sorted(a["score"] for a in kept) == sorted(expected) and 0 < len(kept) < 18


def test_coco_image_ids_are_exact_in_json_numbers():
    assert 0 <= coco_image_id("0123456789abcdef") < 2 ** 53
    assert coco_image_id("a") != coco_image_id("b")
