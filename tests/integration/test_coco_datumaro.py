"""The COCO export imported by datumaro (the format engine CVAT's "COCO 1.0" import runs) as `coco_instances`:
items, boxes, masks, labels, scores and tasks come back as exported, including two images of the same name. The
export is written in datumaro's folder layout by the exporter itself (`--coco-layout datumaro`), in shards, one
subset each.

datumaro lives in its own environment, `.datumaro-venv/` (built by .ci/run from .ci/datumaro-requirements.txt;
or set DATUMARO_PYTHON to another one's python). Without it this test is skipped.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipelines.review.export import export
from pipelines.stages.read import image_id_for
from schemas.annotations import Rle
from tests.labelled import write_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DATUMARO_PYTHON = Path(os.environ.get("DATUMARO_PYTHON", REPO / ".datumaro-venv" / "bin" / "python"))

# Runs in datumaro's environment: imports DIR as coco_instances and prints what it holds, as JSON.
READ_BACK = """
import json, sys
import numpy as np
import datumaro as dm
dataset = dm.Dataset.import_from(sys.argv[1], "coco_instances")
labels = dataset.categories()[dm.AnnotationType.label]
items = []
for item in dataset:
    annotations = []
    for ann in item.annotations:
        record = {"type": ann.type.name, "label": labels[ann.label].name, "id": ann.id,
                  "attributes": {k: v for k, v in ann.attributes.items()}}
        if ann.type == dm.AnnotationType.bbox:
            record["bbox"] = [ann.x, ann.y, ann.w, ann.h]
        elif ann.type == dm.AnnotationType.mask:
            ys, xs = np.nonzero(ann.image)
            record["pixels"] = int(len(xs))
            record["first"] = [int(xs.min()), int(ys.min())] if len(xs) else None
        annotations.append(record)
    media = item.media
    items.append({"id": item.id, "subset": item.subset, "size": list(media.size) if media.has_size else None,
                  "image_exists": bool(media.has_data), "annotations": annotations})
print(json.dumps({"version": dm.__version__, "items": items}))
"""


@pytest.fixture(scope="module")
def imported(labelled, tmp_path_factory):
    if not DATUMARO_PYTHON.exists():
        pytest.skip(f"no datumaro environment at {DATUMARO_PYTHON} (.ci/run builds .datumaro-venv)")
    _, rows, _ = labelled
    root = tmp_path_factory.mktemp("datumaro")
    # two more images named like two of the shapes images, in another folder: their file_names must differ
    detect = [row for row in rows if row.task == "detect" and row.status == "ok"]
    images = Path(detect[0].source_uri).parent
    (images.parent / "again").mkdir(exist_ok=True)
    extra = []
    for row in detect[:2]:
        copy = images.parent / "again" / Path(row.source_uri).name
        shutil.copy(row.source_uri, copy)
        extra.append(row.model_copy(update=dict(source_uri=str(copy), image_id=image_id_for(str(copy)))))
    source = write_rows([*rows, *extra], root / "dataset")
    coco_dir = root / "coco"
    # jobs/export.py --coco-layout datumaro --shard-size 3: annotations/instances_coco-0000N.json beside
    # images/coco-0000N/<file_name>, one subset per shard
    summary = export("coco", str(source), str(coco_dir), shard_size=3, coco_layout="datumaro")
    assert "0 images_not_copied" in summary
    shards = sorted((coco_dir / "annotations").iterdir())
    exported = {key: [item for shard in shards for item in json.loads(shard.read_text())[key]]
                for key in ("images", "annotations")}
    exported["categories"] = json.loads(shards[0].read_text())["categories"]
    exported["subsets"] = {image["file_name"].rsplit(".", 1)[0]: shard.stem.removeprefix("instances_")
                           for shard in shards for image in json.loads(shard.read_text())["images"]}
    result = subprocess.run([str(DATUMARO_PYTHON), "-c", READ_BACK, str(coco_dir)], capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return exported, json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_every_image_is_one_item_even_with_the_same_file_name(imported):
    exported, read, _ = imported
    assert len(read["items"]) == len(exported["images"]) == 8
    names = sorted(image["file_name"].rsplit(".", 1)[0] for image in exported["images"])
    assert sorted(item["id"] for item in read["items"]) == names
    assert sum(name.startswith("again/") for name in names) == 2
    sizes = {image["file_name"].rsplit(".", 1)[0]: [image["height"], image["width"]] for image in exported["images"]}
    for item in read["items"]:
        assert item["image_exists"] and item["size"] == sizes[item["id"]]
        assert item["subset"] == exported["subsets"][item["id"]]
    assert sorted(set(exported["subsets"].values())) == ["coco-00000", "coco-00001", "coco-00002"]


def test_boxes_masks_labels_scores_and_tasks_come_back(imported):
    exported, read, stderr = imported
    assert "Missing annotation field" not in stderr  # box-only annotations carry "segmentation": []
    categories = {c["id"]: c["name"] for c in exported["categories"]}
    by_id = {a["id"]: a for a in exported["annotations"]}
    boxes = [a for item in read["items"] for a in item["annotations"] if a["type"] == "bbox"]
    masks = [a for item in read["items"] for a in item["annotations"] if a["type"] == "mask"]
    assert len(boxes) == len(exported["annotations"])  # one box per annotation, a mask too for segment ones
    assert len(masks) == sum(a["task"] == "segment" for a in exported["annotations"]) > 5
    for box in boxes:
        original = by_id[box["id"]]
        assert box["label"] == categories[original["category_id"]]
        assert box["bbox"] == pytest.approx(original["bbox"])
        assert box["attributes"]["score"] == pytest.approx(original["score"])
        assert box["attributes"]["task"] == original["task"]
    for mask in masks:
        original = by_id[mask["id"]]
        rle = Rle(**original["segmentation"])
        assert mask["label"] == categories[original["category_id"]] and mask["attributes"]["task"] == "segment"
        assert mask["pixels"] == rle.area() == original["area"]
        ys, xs = np.nonzero(rle.to_binary())
        assert mask["first"] == [int(xs.min()), int(ys.min())]
        assert mask["attributes"]["score"] == pytest.approx(original["score"])
