"""The Label Studio export: tasks with percent rectangles, brush masks that label-studio-sdk decodes back
to the same pixels, and text areas."""

import json

import numpy as np
import pytest

from pipelines.review.export import export
from pipelines.review.export.source import RowFilter, UrlMap


def test_label_studio_tasks_carry_percent_boxes_brush_masks_and_text(labelled, tmp_path):
    dataset, rows, _ = labelled
    output = tmp_path / "tasks.json"
    shapes = str(rows[0].source_uri).rsplit("/images/", 1)[0]
    export("labelstudio", str(dataset), str(output), RowFilter(statuses=("ok",)),
           UrlMap.parse([f"{shapes}=https://example.org/shapes"]))
    tasks = json.loads(output.read_text())
    assert len(tasks) == len([r for r in rows if r.status == "ok"])
    by_key = {(t["data"]["image_id"], t["data"]["task"]): t for t in tasks}
    for row in rows[:3]:
        task = by_key[(row.image_id, row.task)]
        assert task["data"]["image"] == "https://example.org/shapes/images/" + row.source_uri.rsplit("/", 1)[1]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == row.model
        regions = prediction["result"]
        assert prediction["score"] == pytest.approx(np.mean([r["score"] for r in regions]))
        assert len({r["id"] for r in regions}) == len(regions)
        if row.task == "detect":
            for region, box in zip(regions, row.boxes, strict=True):
                assert region["type"] == "rectanglelabels" and region["score"] == box.score
                assert (region["original_width"], region["original_height"]) == (row.width, row.height)
                value = region["value"]
                assert value["rectanglelabels"] == [box.label]
                assert value["x"] == pytest.approx(100 * box.x_min / row.width)
                assert value["y"] == pytest.approx(100 * box.y_min / row.height)
                assert value["width"] == pytest.approx(100 * (box.x_max - box.x_min) / row.width)
                assert value["height"] == pytest.approx(100 * (box.y_max - box.y_min) / row.height)
        elif row.task == "segment":
            assert [r["type"] for r in regions] == ["brushlabels"] * len(row.masks)
            assert [r["score"] for r in regions] == [m.score for m in row.masks]
        else:
            assert [(r["type"], r["from_name"], r["value"]["text"]) for r in regions] == [
                ("textarea", "caption", [row.text])]
            assert regions[0]["score"] == row.text_score


def test_brush_masks_decode_back_to_the_same_pixels_with_label_studio_sdk(labelled, brush, tmp_path):
    dataset, rows, _ = labelled
    output = tmp_path / "tasks.json"
    export("labelstudio", str(dataset), str(output), RowFilter(tasks=("segment",)))
    masks = {(m.label, m.x_min, m.y_min): m.rle for r in rows if r.task == "segment" for m in r.masks}
    checked = 0
    for task in json.loads(output.read_text()):
        for region in task["predictions"][0]["result"]:
            height, width = region["original_height"], region["original_width"]
            decoded = brush.decode_rle(region["value"]["rle"]).reshape(height, width, 4)[:, :, 3]
            # which mask: the region's own pixels tell its top-left corner
            ys, xs = np.nonzero(decoded)
            original = [rle for (label, x, y), rle in masks.items()
                        if label == region["value"]["brushlabels"][0] and rle.size == [height, width]
                        and rle.extent()[:2] == (xs.min(), ys.min())]
            assert len(original) == 1
            np.testing.assert_array_equal(decoded > 0, original[0].to_binary())
            checked += 1
    assert checked == len(masks) > 5
