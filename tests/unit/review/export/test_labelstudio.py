"""The Label Studio export: one task per image holding all its rows' regions (percent rectangles, brush masks
that label-studio-sdk decodes back to the same pixels, one text area per text prompt), failed rows shown in
the task's data, a task score that ranks across tasks, and the labelling config that matches."""

import json
import xml.etree.ElementTree as ET
from collections import defaultdict

import numpy as np
import pytest

from pipelines.review.export import export
from pipelines.review.export.labelstudio import TaskScores, text_control
from pipelines.review.export.source import RowFilter, UrlMap


@pytest.fixture(scope="module")
def exported(labelled, tmp_path_factory):
    dataset, rows, _ = labelled
    root = tmp_path_factory.mktemp("ls")
    shapes = str(rows[0].source_uri).rsplit("/images/", 1)[0]
    summary = export("labelstudio", str(dataset), str(root / "tasks.json"), RowFilter(),
                     UrlMap.parse([f"{shapes}=https://example.org/shapes"]), label_config=str(root / "config.xml"))
    return json.loads((root / "tasks.json").read_text()), (root / "config.xml").read_text(), summary


def test_one_task_per_image_with_every_row_in_its_prediction(labelled, exported):
    _, rows, _ = labelled
    tasks, _, summary = exported
    by_image = defaultdict(list)
    for row in rows:
        by_image[row.image_id].append(row)
    assert len(tasks) == len(by_image) == 7
    assert f"wrote 7 Label Studio tasks (one per image: {len(rows)} rows" in summary
    for task in tasks:
        image_rows = {row.task: row for row in by_image[task["data"]["image_id"]]}
        row = next(iter(image_rows.values()))
        assert task["data"]["image"] == "https://example.org/shapes/images/" + row.source_uri.rsplit("/", 1)[1]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == row.model
        regions = prediction["result"]
        assert len({r["id"] for r in regions}) == len(regions)
        if row.status != "ok":
            continue
        detect, segment, caption = image_rows["detect"], image_rows["segment"], image_rows["caption"]
        rectangles = [r for r in regions if r["from_name"] == "detect"]
        for region, box in zip(rectangles, detect.boxes, strict=True):
            assert region["type"] == "rectanglelabels" and region["score"] == box.score
            assert (region["original_width"], region["original_height"]) == (detect.width, detect.height)
            value = region["value"]
            assert value["rectanglelabels"] == [box.label]
            assert value["x"] == pytest.approx(100 * box.x_min / detect.width)
            assert value["y"] == pytest.approx(100 * box.y_min / detect.height)
            assert value["width"] == pytest.approx(100 * (box.x_max - box.x_min) / detect.width)
            assert value["height"] == pytest.approx(100 * (box.y_max - box.y_min) / detect.height)
        brushes = [r for r in regions if r["from_name"] == "segment"]
        assert [r["type"] for r in brushes] == ["brushlabels"] * len(segment.masks)
        assert [r["score"] for r in brushes] == [m.score for m in segment.masks]
        texts = [(r["type"], r["from_name"], r["value"]["text"], r["score"])
                 for r in regions if r["type"] == "textarea"]
        assert texts == [("textarea", "caption_en", [caption.text], caption.text_score)]
        assert len(regions) == len(rectangles) + len(brushes) + 1
        assert task["data"]["problems"] == 0 and task["data"]["errors"] == ""


def test_a_failed_row_is_in_the_task_data_and_its_image_comes_first(exported):
    tasks, _, _ = exported
    (broken,) = [t for t in tasks if t["data"]["problems"]]
    assert broken["data"]["source_uri"].endswith("broken.png") and broken["data"]["tasks"] == "detect"
    assert broken["data"]["errors"] == ("detect [detect circle ; square ; triangle]: image_error: "
                                        "UnidentifiedImageError: cannot identify image file")
    assert broken["predictions"][0]["result"] == [] and broken["predictions"][0]["score"] == 0.0
    assert min(t["predictions"][0]["score"] for t in tasks if t is not broken) > 0.0


def test_the_task_score_sums_the_doubt_of_its_regions_ranked_within_their_own_control():
    scores = TaskScores()
    for value in (0.05, 0.1, 0.15, 0.2):  # boxes score low, texts high: raw values do not compare
        scores.add("detect", value)
    for value in (0.8, 0.85, 0.9, 0.95):
        scores.add("caption_en", value)
    ok = {"status": "ok"}
    assert scores.rank("detect", 0.05) == pytest.approx(0.125) == scores.rank("caption_en", 0.8)
    assert scores.rank("detect", 0.2) == pytest.approx(0.875) == scores.rank("caption_en", 0.95)
    # the least sure box and caption: doubt 0.875 each
    assert scores.task_score([ok], [{"from_name": "detect", "score": 0.05}, {"from_name": "caption_en", "score": 0.8}]
                             ) == pytest.approx(1 / (1 + 2 * 0.875))
    # the surest box and caption: doubt 0.125 each, so it comes later
    assert scores.task_score([ok], [{"from_name": "detect", "score": 0.2}, {"from_name": "caption_en", "score": 0.95}]
                             ) == pytest.approx(1 / (1 + 2 * 0.125))
    # more doubtful objects, earlier
    assert scores.task_score([ok], [{"from_name": "detect", "score": 0.2}] * 4) < scores.task_score(
        [ok], [{"from_name": "detect", "score": 0.2}])
    assert scores.task_score([ok, {"status": "invalid_output"}], [{"from_name": "detect", "score": 0.2}]) == 0.0
    assert scores.task_score([ok], []) == 0.0  # nothing found at all: look at it


def test_the_labelling_config_holds_every_control_and_label_the_tasks_use(exported):
    tasks, config, _ = exported
    view = ET.fromstring(config)
    controls = {element.get("name"): element for element in view if element.get("toName") == "image"}
    assert {name: element.tag for name, element in controls.items()} == {
        "detect": "RectangleLabels", "segment": "BrushLabels", "caption_en": "TextArea"}
    assert [label.get("value") for label in controls["detect"]] == ["circle", "square", "triangle"]
    headers = [element.get("value") for element in view if element.tag == "Header"]
    assert "caption en" in headers  # the prompt a text area answers, shown above it
    for task in tasks:
        for region in task["predictions"][0]["result"]:
            control = controls[region["from_name"]]
            for label in region["value"].get(region["type"], []):
                assert label in {element.get("value") for element in control}
    assert {element.get("value") for element in view if element.tag in ("Image", "Text")} == {"$image", "$errors"}


@pytest.mark.parametrize(("task", "prompt", "name"), [
    ("caption", "caption en", "caption_en"),
    ("caption", "cap fr", "caption_cap_fr"),
    ("ocr", "ocr", "ocr"),
    ("answer", "answer en How many cars?", "answer_en_how_many_cars"),
    ("question", "question en a red car", "question_en_a_red_car"),
])
def test_text_areas_are_named_after_their_prompt(task, prompt, name):
    assert text_control(task, prompt) == name


def test_long_prompts_get_distinct_names_of_bounded_length():
    first = text_control("answer", "answer en " + "what is the colour of the object left of the tree " * 3 + "?")
    second = text_control("answer", "answer en " + "what is the colour of the object left of the tree " * 3 + "!")
    assert first != second and len(first) <= 48 and first.startswith("answer_en_what_is")


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


def read_json(path):
    return json.loads(path.read_text())


def test_label_studio_task_files_hold_at_most_n_tasks_and_together_the_whole_export(labelled, tmp_path):
    dataset, _, _ = labelled
    export("labelstudio", str(dataset), str(tmp_path / "one.json"))
    summary = export("labelstudio", str(dataset), str(tmp_path / "shards"), shard_size=2)
    whole = read_json(tmp_path / "one.json")
    files = sorted((tmp_path / "shards").iterdir())
    assert [f.name for f in files][:2] == ["tasks-00000.json", "tasks-00001.json"]
    shards = [read_json(f) for f in files]
    assert len(files) == -(-len(whole) // 2) and all(1 <= len(shard) <= 2 for shard in shards)
    assert [task for shard in shards for task in shard] == whole
    assert f"{len(files)} files of at most 2 tasks" in summary
