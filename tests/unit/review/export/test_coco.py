"""The COCO export, checked with pycocotools: COCOeval of the exported file equals jobs/evaluate.py's scores of
the dataset (boxes and masks), box-only annotations carry an empty segmentation, a segment object's bbox is its
mask's tight box, every annotation names its task, and file names stay unique."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.review.evaluate import evaluate_rows
from pipelines.review.export import export
from pipelines.review.export.coco import coco_image_id
from pipelines.review.export.source import RowFilter
from pipelines.stages.read import image_id_for
from schemas.annotations import Box, Mask, Rle
from tests.labelled import write_rows


def quiet(call, *args):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return call(*args)


def noisy(rows, seed=3):
    """The perfect rows made wrong in places: boxes moved, labels swapped, masks shifted inside a loose box
    (the model's box is not its mask's tight box), so the scores are far from 1.0 and from each other."""
    rng = np.random.default_rng(seed)
    labels = ["circle", "square", "triangle"]
    out = []
    for row in rows:
        if row.status != "ok" or row.task == "caption":
            out.append(row)
            continue
        boxes, masks = [], []
        for box in row.boxes:
            dx, dy = rng.integers(-12, 13, size=2)
            label = labels[int(rng.integers(3))] if rng.random() < 0.3 else box.label
            moved = box.model_copy(update=dict(label=label, x_min=max(0.0, box.x_min + dx),
                                               y_min=max(0.0, box.y_min + dy), x_max=box.x_max + dx,
                                               y_max=box.y_max + dy))
            boxes.append(moved)
        if row.task == "segment":
            boxes = []
            for mask in row.masks:
                dx, dy = (int(v) for v in rng.integers(-8, 9, size=2))
                pixels = np.roll(mask.rle.to_binary(), (dy, dx), axis=(0, 1))
                rle = Rle.from_binary(pixels)
                x0, y0, x1, y1 = rle.extent()
                h, w = rle.size
                loose = dict(x_min=max(0.0, x0 - 3.5), y_min=max(0.0, y0 - 2.0), x_max=min(float(w), x1 + 4.0),
                             y_max=min(float(h), y1 + 1.5))
                label = labels[int(rng.integers(3))] if rng.random() < 0.3 else mask.label
                masks.append(Mask(label=label, score=float(rng.uniform(0.05, 0.95)), rle=rle, **loose))
                boxes.append(Box(label=label, score=float(rng.uniform(0.05, 0.95)), **loose))
        out.append(row.model_copy(update=dict(boxes=boxes, masks=masks)))
    return out


@pytest.fixture(scope="module")
def noisy_export(labelled, tmp_path_factory):
    _, rows, truth = labelled
    root = tmp_path_factory.mktemp("noisy")
    rows = noisy(rows)
    dataset = write_rows(rows, root / "dataset")
    summary = export("coco", str(dataset), str(root / "coco.json"))
    return rows, truth, json.loads((root / "coco.json").read_text()), summary


def cocoeval(truth, exported, annotations, iou_type):
    """AP of exported annotations against the shapes truth, images and categories matched by name."""
    by_name = {image["file_name"]: image["id"] for image in exported["images"]}
    categories = {c["name"]: c["id"] for c in exported["categories"]}
    truth_names = {c["id"]: c["name"] for c in truth["categories"]}
    images = {image["id"]: by_name[image["file_name"]] for image in truth["images"]}
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{**image, "id": images[image["id"]]} for image in truth["images"]],
        "categories": [{"id": categories[c["name"]], "name": c["name"]} for c in truth["categories"]],
        "annotations": [{**a, "image_id": images[a["image_id"]],
                         "category_id": categories[truth_names[a["category_id"]]]} for a in truth["annotations"]]}
    quiet(ground_truth.createIndex)
    evaluator = COCOeval(ground_truth, quiet(ground_truth.loadRes, [dict(a) for a in annotations]), iou_type)
    evaluator.params.imgIds = sorted(images.values())
    for step in (evaluator.evaluate, evaluator.accumulate, evaluator.summarize):
        quiet(step)
    return evaluator.stats[0], evaluator.stats[1]


def test_cocoeval_of_the_export_equals_evaluate_on_the_dataset_boxes_and_masks(noisy_export):
    rows, truth, exported, summary = noisy_export
    report = evaluate_rows([row.model_dump() for row in rows if row.status == "ok"], truth)
    assert 0.05 < report["detect"]["mAP"] < 0.9 and 0.05 < report["segment_masks"]["mAP"] < 0.9
    by_task = {task: [a for a in exported["annotations"] if a["task"] == task] for task in ("detect", "segment")}
    assert cocoeval(truth, exported, by_task["detect"], "bbox") == pytest.approx(
        (report["detect"]["mAP"], report["detect"]["mAP_50"]), abs=1e-12)
    assert cocoeval(truth, exported, by_task["segment"], "segm") == pytest.approx(
        (report["segment_masks"]["mAP"], report["segment_masks"]["mAP_50"]), abs=1e-12)
    assert "wrote 6 images" in summary and len(exported["images"]) == len(truth["images"])


def test_annotations_say_their_task_and_segment_boxes_are_their_masks_tight_boxes(noisy_export):
    rows, _, exported, _ = noisy_export
    masks = {m.rle.counts: (m, r) for r in rows if r.task == "segment" for m in r.masks}
    boxes = {(b.x_min, b.y_min, b.score) for r in rows if r.task == "detect" for b in r.boxes}
    assert len(exported["annotations"]) == len(masks) + len(boxes)
    for annotation in exported["annotations"]:
        assert annotation["attributes"] == {"task": annotation["task"]}
        if annotation["task"] == "detect":
            assert annotation["segmentation"] == [] and "model_bbox" not in annotation
            assert (annotation["bbox"][0], annotation["bbox"][1], annotation["score"]) in boxes
            continue
        mask, _ = masks[annotation["segmentation"]["counts"]]
        x0, y0, x1, y1 = mask.rle.extent()
        assert annotation["bbox"] == [x0, y0, x1 - x0, y1 - y0] != annotation["model_bbox"]
        assert annotation["model_bbox"] == [mask.x_min, mask.y_min, mask.x_max - mask.x_min, mask.y_max - mask.y_min]
        assert annotation["score"] == mask.score and annotation["area"] == mask.rle.area()


def test_file_names_are_paths_below_the_common_root_so_same_names_do_not_collide(labelled, tmp_path):
    _, rows, _ = labelled
    detect = [row for row in rows if row.task == "detect" and row.status == "ok"][:2]
    moved = []
    for folder, row in zip(("a", "b/c"), detect, strict=True):
        uri = f"file:///data/{folder}/same.png"
        moved.append(row.model_copy(update=dict(source_uri=uri, image_id=image_id_for(uri))))
    export("coco", str(write_rows(moved, tmp_path / "dataset")), str(tmp_path / "coco.json"))
    images = json.loads((tmp_path / "coco.json").read_text())["images"]
    assert sorted((i["file_name"], i["coco_url"], i["source_uri"]) for i in images) == [
        ("a/same.png", "file:///data/a/same.png", "file:///data/a/same.png"),
        ("b/c/same.png", "file:///data/b/c/same.png", "file:///data/b/c/same.png")]


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


def read_json(path):
    return json.loads(path.read_text())


def test_coco_files_stand_alone_with_the_same_categories_and_together_equal_the_single_file(labelled, tmp_path):
    dataset, _, _ = labelled
    export("coco", str(dataset), str(tmp_path / "one.json"))
    export("coco", str(dataset), str(tmp_path / "shards"), shard_size=3)
    whole = read_json(tmp_path / "one.json")
    shards = [read_json(f) for f in sorted((tmp_path / "shards").iterdir())]
    assert len(shards) == -(-len(whole["images"]) // 3)
    for shard in shards:
        assert 1 <= len(shard["images"]) <= 3 and shard["categories"] == whole["categories"]
        assert {a["image_id"] for a in shard["annotations"]} <= {image["id"] for image in shard["images"]}
    key = lambda items: sorted(items, key=lambda item: item["id"])  # noqa: E731
    assert key([i for s in shards for i in s["images"]]) == key(whole["images"])
    # the same objects, and ids unique across the files
    annotations = [a for s in shards for a in s["annotations"]]
    assert len({a["id"] for a in annotations}) == len(annotations) == len(whole["annotations"])
    strip = lambda a: json.dumps({k: v for k, v in a.items() if k != "id"}, sort_keys=True)  # noqa: E731
    assert sorted(map(strip, annotations)) == sorted(map(strip, whole["annotations"]))


def test_the_datumaro_layout_puts_each_subset_beside_its_images(labelled, tmp_path):
    dataset, rows, _ = labelled
    single = export("coco", str(dataset), str(tmp_path / "one"), coco_layout="datumaro")
    export("coco", str(dataset), str(tmp_path / "plain.json"))
    whole = read_json(tmp_path / "one" / "annotations" / "instances_default.json")
    assert whole == read_json(tmp_path / "plain.json") and "in datumaro's layout" in single
    images = {image["file_name"]: image["source_uri"] for image in whole["images"]}
    copied = {str(p.relative_to(tmp_path / "one" / "images" / "default")): p.read_bytes()
              for p in (tmp_path / "one" / "images" / "default").rglob("*") if p.is_file()}
    assert copied == {name: open(uri, "rb").read() for name, uri in images.items()}
    assert f"{len(images)} images_copied, 0 images_not_copied" in single

    export("coco", str(dataset), str(tmp_path / "shards"), shard_size=3, coco_layout="datumaro")
    files = sorted((tmp_path / "shards" / "annotations").iterdir())
    assert [f.name for f in files] == [f"instances_coco-{n:05d}.json" for n in range(-(-len(images) // 3))]
    for path in files:
        subset = path.stem.removeprefix("instances_")
        shard_images = read_json(path)["images"]
        folder = tmp_path / "shards" / "images" / subset
        assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == \
            sorted(image["file_name"] for image in shard_images)


def test_an_image_that_cannot_be_fetched_is_counted_not_fatal(labelled, tmp_path):
    _, rows, _ = labelled
    moved = [row.model_copy(update=dict(source_uri=row.source_uri + ".gone")) for row in rows]
    summary = export("coco", str(write_rows(moved, tmp_path / "dataset")), str(tmp_path / "out"),
                     coco_layout="datumaro")
    assert "0 images_copied" in summary and "first image not copied" in summary and ".gone" in summary
    with pytest.raises(ValueError, match="needs --format coco"):
        export("labelstudio", str(tmp_path / "dataset"), str(tmp_path / "t.json"), coco_layout="datumaro")
