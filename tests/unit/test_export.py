"""Exports for annotators, checked with the tools' own libraries: pycocotools loads and evaluates
the COCO file, label-studio-sdk's converter decodes the brush masks back to the same pixels."""

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.export import export
from pipelines.export.brush import mask_to_brush_rle
from pipelines.export.coco import coco_image_id
from pipelines.export.source import RowFilter, UrlMap
from tests.labelled import shapes_rows, write_rows

REPO = Path(__file__).resolve().parents[2]


def export_main(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("export_job", REPO / "jobs" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def label_studio_brush():
    """The SDK's converter (installed without its many dependencies in CI, see .ci/run)."""
    if os.environ.get("CI"):
        import label_studio_sdk.converter.brush as brush
    else:
        brush = pytest.importorskip("label_studio_sdk.converter.brush", reason="pip install --no-deps label-studio-sdk")
    return brush


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    rows, truth = shapes_rows(root / "shapes")
    return write_rows(rows, root / "dataset"), rows, truth


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


def test_brush_masks_decode_back_to_the_same_pixels_with_label_studio_sdk(labelled, tmp_path):
    brush = label_studio_brush()
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


def test_brush_rle_is_byte_for_byte_label_studios_own_encoding():
    brush = label_studio_brush()
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 5), (40, 30), (300, 500)]:
        for density in (0.0, 0.01, 0.5, 1.0):
            mask = rng.random(shape) < density
            assert mask_to_brush_rle(mask) == brush.mask2rle(mask.astype(np.uint8) * 255)
    # a run longer than 65,536 elements is cut into chunks the same way
    mask = np.zeros((300, 400), bool)
    mask[:200] = True
    assert mask_to_brush_rle(mask) == brush.mask2rle(mask.astype(np.uint8) * 255)
    round_trip = brush.decode_rle(mask_to_brush_rle(mask)).reshape(300, 400, 4)[:, :, 3]
    np.testing.assert_array_equal(round_trip > 0, mask)


def test_coco_image_ids_are_exact_in_json_numbers():
    assert 0 <= coco_image_id("0123456789abcdef") < 2 ** 53
    assert coco_image_id("a") != coco_image_id("b")


def test_the_cli_reports_bad_flags_in_one_line(labelled, tmp_path, capsys):
    dataset, _, _ = labelled
    assert export_main(["--input", str(dataset), "--format", "coco", "--output", str(tmp_path / "a.json"),
                        "--image-url-prefix", "no-equals-sign"]) == 2
    assert "FROM=TO" in capsys.readouterr().err
    assert export_main(["--input", str(tmp_path / "missing"), "--format", "labelstudio",
                        "--output", str(tmp_path / "b.json")]) == 2
    assert export_main(["--input", str(dataset), "--format", "labelstudio", "--output", str(tmp_path / "c.json"),
                        "--tasks", "detect", "--status", "ok", "--min-score", "0.5"]) == 0
    assert "Label Studio tasks" in capsys.readouterr().out


# VmHWM, the process's peak resident memory (ru_maxrss would carry the forking test process's over exec).
MEMORY_SCRIPT = """
import re, sys
from pipelines.export import export
from pipelines.export.source import RowFilter
export(sys.argv[1], sys.argv[2], sys.argv[3], RowFilter(), batch_size=500)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) // 1024)
"""


def peak_rss_mib(fmt: str, dataset, output) -> int:
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, fmt, str(dataset), str(output)],
                            capture_output=True, text=True, check=True, cwd=REPO)
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["labelstudio", "coco"])
def test_exports_stream_memory_does_not_grow_with_the_rows(tmp_path, fmt):
    from tests.labelled_many import write_many_rows

    small = write_many_rows(tmp_path / "small", rows=500)
    large, in_memory_mib = write_many_rows(tmp_path / "large", rows=40_000, report_size=True)
    small_peak = peak_rss_mib(fmt, small, tmp_path / "small.json")
    large_peak = peak_rss_mib(fmt, large, tmp_path / "large.json")
    print(f"{fmt}: peak RSS {small_peak} MiB for 500 rows, {large_peak} MiB for 40,000 rows "
          f"({in_memory_mib} MiB as an Arrow table)")
    # Holding the rows would take hundreds of MiB (the export's own dicts for 40,000 rows alone are
    # over 100 MiB); streaming keeps the growth to about one batch and one row group.
    assert in_memory_mib > 300
    assert large_peak - small_peak < 64
    if fmt == "labelstudio":
        assert len(json.loads((tmp_path / "large.json").read_text())) == 40_000
