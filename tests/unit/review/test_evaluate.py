"""Scoring annotation rows against COCO ground truth with pycocotools."""

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from pipelines.review.evaluate import (
    ImageIndex,
    evaluate_rows,
    format_report,
    format_side_by_side,
    name_of,
    side_by_side,
    word_accuracy,
)
from schemas import LABEL_ROW_SCHEMA, LabelRow, Rle
from tests.jobs import load_job

REPO = Path(__file__).resolve().parents[3]
IMAGES = {"a.png": (100, 50), "b.png": (60, 80)}  # name -> (width, height)
# name -> (category, x, y, w, h): rectangles, so the mask is its box
OBJECTS = [("a.png", "circle", 10, 5, 30, 20), ("a.png", "square", 60, 10, 25, 30), ("b.png", "square", 2, 40, 40, 35)]
CAPTIONS = {"a.png": "a red circle and a blue square", "b.png": "a green square"}


def rectangle(name: str, x: int, y: int, w: int, h: int) -> Rle:
    width, height = IMAGES[name]
    pixels = np.zeros((height, width), bool)
    pixels[y:y + h, x:x + w] = True
    return Rle.from_binary(pixels)


def ground_truth() -> dict:
    ids = {name: i + 1 for i, name in enumerate(IMAGES)}
    categories = {"circle": 1, "square": 2}
    return {
        "images": [{"id": ids[n], "file_name": n, "width": w, "height": h} for n, (w, h) in IMAGES.items()],
        "categories": [{"id": i, "name": n} for n, i in categories.items()],
        "annotations": [
            {"id": k + 1, "image_id": ids[n], "category_id": categories[c], "bbox": [x, y, w, h], "area": w * h,
             "segmentation": rectangle(n, x, y, w, h).model_dump(), "iscrowd": 0}
            for k, (n, c, x, y, w, h) in enumerate(OBJECTS)
        ],
        "captions": [{"image_id": ids[n], "caption": c} for n, c in CAPTIONS.items()],
    }


def rows(shift: float = 0.0, drop: str | None = None, caption_of=CAPTIONS.get) -> list[dict]:
    """LabelRows as the pipeline writes them, for detect (boxes moved right by `shift`), segment
    and caption."""
    out = []
    for name, (width, height) in IMAGES.items():
        if name == drop:
            continue
        boxes, shifted, masks = [], [], []
        for n, label, x, y, w, h in OBJECTS:
            if n == name:
                box = {"label": label, "x_min": x, "y_min": y, "x_max": x + w, "y_max": y + h}
                boxes.append(box)
                shifted.append({**box, "x_min": x + shift, "x_max": x + w + shift})
                masks.append({**box, "rle": rectangle(name, x, y, w, h).model_dump()})
        base = {"image_id": name, "source_uri": f"gs://bucket/shards/s.tar#{name}", "width": width, "height": height,
                "model": "m", "raw_output": "", "status": "ok", "run_id": "r",
                "created_at": datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)}
        out += [
            LabelRow(**base, task="detect", prompt="detect circle ; square", boxes=shifted).model_dump(),
            LabelRow(**base, task="segment", prompt="segment circle ; square", boxes=boxes, masks=masks).model_dump(),
            LabelRow(**base, task="caption", prompt="caption en", text=caption_of(name)).model_dump(),
        ]
    return out


@pytest.mark.parametrize("uri, name", [("file:///data/x/a.png", "a.png"), ("gs://b/s.tar#a.png", "a.png"),
                                       ("a.png", "a.png"), ("s3://b/t/shard-1.tar#k.jpg", "k.jpg")])
def test_rows_join_ground_truth_on_the_file_name(uri, name):
    assert name_of(uri) == name


def test_perfect_predictions_score_one():
    report = evaluate_rows(rows(), ground_truth())
    for key in ("detect", "segment_boxes", "segment_masks"):
        assert report[key]["mAP"] == pytest.approx(1.0) and report[key]["mAP_50"] == pytest.approx(1.0)
        assert report[key]["per_class_AP"] == {"circle": pytest.approx(1.0), "square": pytest.approx(1.0)}
    assert report["caption"] == {"exact_match": 1.0, "word_accuracy": 1.0, "captions": 2}
    assert report["rows_per_task_and_status"] == {"caption": {"ok": 2}, "detect": {"ok": 2}, "segment": {"ok": 2}}
    assert report["unknown_images"] == 0 and report["missing_images"] == {"caption": 0, "detect": 0, "segment": 0}
    assert "mAP@.5 1.000" in format_report(report)


def test_boxes_shifted_by_half_their_width_fail_the_strict_thresholds():
    report = evaluate_rows(rows(shift=12.0), ground_truth())
    # a 30-wide box shifted by 12 has IoU 18/42 = 0.43 with its truth: below 0.5
    assert report["detect"]["per_class_AP"]["circle"] == pytest.approx(0.0)
    assert 0 < report["detect"]["mAP"] < report["detect"]["mAP_50"] < 1
    assert report["segment_masks"]["mAP"] == pytest.approx(1.0)  # segment rows were not shifted


def test_a_missing_image_costs_recall_and_is_counted():
    report = evaluate_rows(rows(drop="b.png"), ground_truth())
    assert report["missing_images"]["detect"] == 1
    per_class = report["detect"]["per_class_AP"]
    assert per_class["square"] < 0.6 and per_class["circle"] == pytest.approx(1.0)
    assert report["caption"]["exact_match"] == 0.5


def test_captions_score_exact_match_and_words_in_order():
    wrong = {"a.png": "A red circle and a green square.", "b.png": "square green a"}
    report = evaluate_rows(rows(caption_of=wrong.get), ground_truth())
    assert report["caption"]["exact_match"] == 0.0
    # 6 of 7 words in order for a.png; for b.png one word of three keeps its order
    assert report["caption"]["word_accuracy"] == pytest.approx((6 / 7 + 1 / 3) / 2)
    assert word_accuracy([], []) == 1.0 and word_accuracy(["a"], []) == 0.0


def test_no_predictions_score_zero():
    report = evaluate_rows([r for r in rows() if r["task"] != "detect"] + [
        {**r, "boxes": []} for r in rows() if r["task"] == "detect"], ground_truth())
    assert report["detect"]["mAP"] == 0.0 and report["detect"]["predictions"] == 0


def test_the_cli_reads_a_written_dataset_and_writes_json(tmp_path, capsys):
    table = pa.Table.from_pylist(rows(), schema=LABEL_ROW_SCHEMA)
    pads.write_dataset(table, tmp_path / "labels", format="parquet", partitioning=["task"],
                       partitioning_flavor="hive")
    (tmp_path / "labels" / "_summary.json").write_text("{}")  # a finished run
    (tmp_path / "gt.json").write_text(json.dumps(ground_truth()))
    job = load_job("evaluate")
    assert job.main(["--predictions", str(tmp_path / "labels"), "--ground-truth", str(tmp_path / "gt.json"),
                     "--output", str(tmp_path / "report.json")]) == 0
    assert "detect         mAP@[.5:.95] 1.000" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["segment_masks"]["mAP_50"] == pytest.approx(1.0)


def test_side_by_side_pairs_each_box_with_its_best_truth_of_the_same_label():
    lines = side_by_side(rows(shift=12.0), ground_truth(), limit=1)
    assert {line["image"] for line in lines} == {"a.png"}
    detect = {line["label"]: line for line in lines if line["task"] == "detect"}
    # the 30-wide circle moved 12 px right: overlap 18 x 20 over a union of 42 x 20
    assert detect["circle"]["truth"] == [10, 5, 30, 20] and detect["circle"]["predicted"] == [22, 5, 30, 20]
    assert detect["circle"]["iou"] == pytest.approx(18 / 42)
    assert [line["iou"] for line in lines if line["task"] == "segment"] == [pytest.approx(1.0)] * 2
    caption = next(line for line in lines if line["task"] == "caption")
    assert caption["predicted"] == caption["truth"] == CAPTIONS["a.png"]
    table = format_side_by_side(lines)
    assert "[22, 5, 30, 20]" in table and "0.43" in table and len(table.splitlines()) == 1 + len(lines)


@pytest.mark.parametrize("file_name", [
    "../../data/upload/shapes/images/{}",  # Label Studio's COCO export of local-storage images
    "images/13c69b11__{}",  # ... of uploaded images: a hash prefix on the name
    "{}",
])
def test_ground_truth_written_by_labelling_tools_joins_on_the_paths_tail(file_name):
    truth = ground_truth()
    truth["images"] = [image | {"file_name": file_name.format(image["file_name"])} for image in truth["images"]]
    report = evaluate_rows(rows(), truth)
    assert report["unknown_images"] == 0 and report["missing_images"] == {"caption": 0, "detect": 0, "segment": 0}
    assert report["detect"]["mAP"] == pytest.approx(1.0) and report["caption"]["exact_match"] == 1.0


def test_two_ground_truth_images_of_one_name_are_told_apart_by_their_folders_or_refused():
    truth = ground_truth()
    a_image = truth["images"][0]
    truth["images"] = [a_image | {"file_name": "shards/s.tar/a.png"}, *truth["images"][1:],
                       a_image | {"id": 99, "file_name": "other/a.png"}]
    # the rows' gs://bucket/shards/s.tar#a.png shares two parts of its path with the first
    assert ImageIndex(truth["images"])({"source_uri": "gs://bucket/shards/s.tar#a.png"}) == a_image["id"]
    assert evaluate_rows(rows(), truth)["missing_images"]["detect"] == 1  # image 99 has no rows
    ambiguous = [a_image | {"file_name": "x/a.png"}, a_image | {"id": 99, "file_name": "y/a.png"}]
    with pytest.raises(ValueError, match="matches two ground-truth images equally well"):
        ImageIndex(ambiguous)({"source_uri": "gs://bucket/shards/s.tar#a.png"})


def test_the_rows_image_id_kept_in_the_ground_truth_joins_first_whatever_the_file_names():
    """Label Studio tasks and COCO images exported by this project keep the rows' image_id: renamed or
    uploaded files, or two of one name, still join to their own rows."""
    truth = ground_truth()
    # both images renamed alike (a tool that flattened the paths): only the image id tells them apart
    truth["images"] = [image | {"file_name": "upload/x.png", "row_image_id": image["file_name"]}
                       for image in truth["images"]]
    report = evaluate_rows(rows(), truth)
    assert report["unknown_images"] == 0 and report["detect"]["mAP"] == pytest.approx(1.0)
    assert report["caption"]["exact_match"] == 1.0
    # a row whose image id the ground truth lacks still joins by its file name
    index = ImageIndex([{"id": 5, "file_name": "a.png", "row_image_id": "other"}])
    assert index({"source_uri": "gs://b/a.png", "image_id": "a-id"}) == 5
    with pytest.raises(ValueError, match="name the same image_id"):
        ImageIndex([{"id": 1, "file_name": "a.png", "row_image_id": "k"}, {"id": 2, "file_name": "b.png",
                                                                           "row_image_id": "k"}])


def test_a_ground_truth_for_named_tasks_scores_only_those():
    """A COCO file without task attributes (boxes drawn for detection) scores detect and segment alike
    unless the user names the tasks it is for (`--ground-truth-tasks`)."""
    everything = evaluate_rows(rows(), ground_truth())
    assert {"detect", "segment_boxes", "segment_masks", "caption"} <= everything.keys()
    detect_only = evaluate_rows(rows(), ground_truth(), ("detect",))
    assert detect_only["detect"] == everything["detect"]
    assert not {"segment_boxes", "segment_masks", "caption"} & detect_only.keys()
    assert detect_only["rows_per_task_and_status"] == everything["rows_per_task_and_status"]  # still counted
    assert "caption, segment not scored" in format_report(detect_only)
    assert set(detect_only["score_calibration"]) == {"detect"}


def test_boxes_only_ground_truth_scores_boxes_and_says_masks_were_not_scored(tmp_path, capsys):
    """Label Studio's COCO export keeps rectangles with `segmentation: []`: pycocotools crashed on it."""
    truth = ground_truth()
    truth["annotations"] = [a | {"segmentation": []} for a in truth["annotations"]]
    report = evaluate_rows(rows(), truth)
    assert report["detect"]["mAP"] == pytest.approx(1.0) and report["segment_boxes"]["mAP"] == pytest.approx(1.0)
    assert "segment_masks" not in report and "masks are not scored" in format_report(report)
    # some objects with a mask, some without: masks scored against those that have one
    truth = ground_truth()
    truth["annotations"][2]["segmentation"] = []
    report = evaluate_rows([r for r in rows() if name_of(r["source_uri"]) == "a.png"], truth)
    assert report["segment_masks"]["mAP"] == pytest.approx(1.0)
    assert report["segment_masks"]["objects_without_mask"] == 1


def test_the_projects_own_coco_export_as_ground_truth_scores_each_task_against_its_own_objects():
    """The export names each annotation's task; detect objects carry `segmentation: []`."""
    truth = ground_truth()
    detect_copies = [a | {"id": 100 + a["id"], "segmentation": [], "task": "detect"} for a in truth["annotations"]]
    truth["annotations"] = [a | {"task": "segment"} for a in truth["annotations"]] + detect_copies
    report = evaluate_rows(rows(), truth)
    for key in ("detect", "segment_boxes", "segment_masks"):
        assert report[key]["mAP"] == pytest.approx(1.0), key
    assert report["segment_masks"]["objects_without_mask"] == 0
