"""COCO instances JSON (boxes and RLE masks, with scores), streamed in three passes.

Pass one finds the images' common root (each `file_name` is the path below it, so two images of the
same name in different folders stay two), pass two writes `images` (each image once, whatever number
of rows it has) and learns the categories; pass three writes `annotations`. Every annotation says
which task made it (`task`, and `attributes.task` for datumaro and CVAT); a box-only one has
`"segmentation": []` (CVAT's datumaro refuses an annotation without the field); a `segment` object
with a mask has the mask's tight box as `bbox` and the mask's score (FiftyOne crops a mask to its
`bbox`), and the model's own box as `model_bbox`. Memory holds one batch of rows, the category names and
a set of 64-bit image ids (to write each image once), not the rows. COCO image ids are the first
52 bits of the SHA-256 of `image_id` (exact in JSON and JavaScript numbers); category ids number
the labels in name order from 1.
"""

from __future__ import annotations

import hashlib
import json

import fsspec
from pycocotools import mask as mask_utils

from pipelines.review.export.jsonstream import JsonArrayWriter, shard_path
from pipelines.review.export.source import (
    DEFAULT_BATCH_SIZE,
    RowFilter,
    UrlMap,
    common_root,
    iter_images,
    iter_rows,
    objects_of,
    relative_name,
)
from pipelines.tasks.registry import TASKS

# Tasks whose rows carry objects; text tasks have none for COCO.
OBJECT_TASKS = tuple(name for name, spec in TASKS.items() if "boxes" in spec.output_fields)


def coco_image_id(image_id: str) -> int:
    return int(hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:13], 16)


def _object_filter(row_filter: RowFilter) -> RowFilter:
    tasks = row_filter.tasks or OBJECT_TASKS
    if unsupported := [task for task in tasks if task not in OBJECT_TASKS]:
        raise ValueError(f"COCO holds boxes and masks; tasks {unsupported} have none (use {', '.join(OBJECT_TASKS)})")
    return RowFilter(tasks=tuple(tasks), statuses=row_filter.statuses, min_score=row_filter.min_score)


def _xywh(box: dict) -> list[float]:
    return [box["x_min"], box["y_min"], box["x_max"] - box["x_min"], box["y_max"] - box["y_min"]]


def annotation_of(number: int, image: int, category: int, task: str, box: dict, mask: dict | None) -> dict:
    """One COCO annotation: bbox [x, y, w, h] in pixels, its task and score; with a mask, its RLE, its
    pixel area, the mask's tight box as bbox and the mask's score (the model's box is `model_bbox`)."""
    bbox = _xywh(box)
    annotation = {"id": number, "image_id": image, "category_id": category, "bbox": bbox,
                  "area": bbox[2] * bbox[3], "iscrowd": 0, "segmentation": [], "score": box["score"],
                  "task": task, "attributes": {"task": task}}
    if mask is not None:
        rle = {"size": list(mask["rle"]["size"]), "counts": mask["rle"]["counts"]}
        coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        annotation.update(segmentation=rle, score=mask["score"], model_bbox=bbox,
                          bbox=[float(v) for v in mask_utils.toBbox(coded)], area=float(mask_utils.area(coded)))
    return annotation


def image_record(row: dict, root: str | None, urls: UrlMap) -> dict:
    """One COCO image: its id, its path below the images' common root, size and URLs."""
    return {"id": coco_image_id(row["image_id"]), "file_name": relative_name(row["source_uri"], root or ""),
            "width": row["width"], "height": row["height"], "coco_url": urls.url(row["source_uri"]),
            "source_uri": row["source_uri"]}


def _root_and_labels(uri: str, row_filter: RowFilter, batch_size: int) -> tuple[str | None, dict[str, int]]:
    """The images' common root, and the category ids of the labels the export will hold."""
    root, labels = None, set()
    for rows in iter_rows(uri, ["source_uri", "width", "boxes", "masks", "task"], row_filter, batch_size):
        placed = [row for row in rows if row["width"] is not None]
        if placed:
            root = common_root([row["source_uri"] for row in placed] + ([root] if root is not None else []))
        labels.update(box["label"] for row in placed for box, _ in objects_of(row, row_filter))
    return root, {label: number for number, label in enumerate(sorted(labels), start=1)}


def export_coco_shards(
    uri: str, folder: str, shard_size: int, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, int]:
    """The COCO export as files of at most `shard_size` images each (`folder/coco-00000.json`, ...), one
    labelling job's worth apiece: every file a whole COCO dataset with all the categories (the same ids
    in every file), and annotation ids unique across files, so the files together are exactly the
    single-file export. Memory holds one shard's images and annotations."""
    if shard_size < 1:
        raise ValueError(f"a shard holds at least one image, not {shard_size}")
    row_filter = _object_filter(row_filter)
    root, categories = _root_and_labels(uri, row_filter, batch_size)
    info = {"description": f"paligemma-labeller export of {uri}"}
    category_list = [{"id": number, "name": label, "supercategory": ""} for label, number in categories.items()]
    counts = {"images": 0, "annotations": 0, "categories": len(categories), "files": 0}
    images: list[dict] = []
    annotations: list[dict] = []

    def flush() -> None:
        with fsspec.open(shard_path(folder, "coco", counts["files"]), "w") as handle:
            json.dump({"info": info, "images": images, "categories": category_list, "annotations": annotations},
                      handle, separators=(",", ":"))
        counts["files"] += 1
        counts["images"] += len(images)
        counts["annotations"] += len(annotations)
        images.clear()
        annotations.clear()

    columns = ["source_uri", "width", "height", "boxes", "masks"]
    for rows in iter_images(uri, columns, row_filter, batch_size):
        placed = [row for row in rows if row["width"] is not None]
        if not placed:  # an unreadable image: nothing to place objects on
            continue
        images.append(image_record(placed[0], root, urls))
        for row in placed:
            for box, mask in objects_of(row, row_filter):
                number = counts["annotations"] + len(annotations) + 1
                annotations.append(annotation_of(number, images[-1]["id"], categories[box["label"]], row["task"],
                                                 box, mask))
        if len(images) == shard_size:
            flush()
    if images or not counts["files"]:
        flush()
    return counts


def export_coco(
    uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, int]:
    """Stream the dataset at `uri` into a COCO JSON file at `output`; returns the counts written."""
    row_filter = _object_filter(row_filter)
    labels: set[str] = set()
    seen: set[int] = set()
    counts = {"images": 0, "annotations": 0, "categories": 0}
    root: str | None = None  # the images' common directory; file_name is the path below it
    for rows in iter_rows(uri, ["source_uri", "width"], row_filter, batch_size):
        uris = [row["source_uri"] for row in rows if row["width"] is not None]
        if uris:
            root = common_root(uris if root is None else [root, *uris])
    with fsspec.open(output, "w") as handle:
        handle.write('{"info":' + json.dumps({"description": f"paligemma-labeller export of {uri}"}) + ',"images":')
        with JsonArrayWriter(handle) as images:
            for rows in iter_rows(uri, ["image_id", "source_uri", "width", "height", "boxes", "masks"], row_filter,
                                  batch_size):
                for row in rows:
                    if row["width"] is None:  # an unreadable image: nothing to place objects on
                        continue
                    labels.update(box["label"] for box, _ in objects_of(row, row_filter))
                    image = coco_image_id(row["image_id"])
                    if image in seen:
                        continue
                    seen.add(image)
                    images.write(image_record(row, root, urls))
        counts["images"] = images.count
        categories = {label: number for number, label in enumerate(sorted(labels), start=1)}
        counts["categories"] = len(categories)
        handle.write(',"categories":' + json.dumps([{"id": number, "name": label, "supercategory": ""}
                                                     for label, number in categories.items()]))
        handle.write(',"annotations":')
        with JsonArrayWriter(handle) as annotations:
            for rows in iter_rows(uri, ["image_id", "width", "task", "boxes", "masks"], row_filter, batch_size):
                for row in rows:
                    if row["width"] is None:
                        continue
                    image = coco_image_id(row["image_id"])
                    for box, mask in objects_of(row, row_filter):
                        annotations.write(annotation_of(annotations.count + 1, image, categories[box["label"]],
                                                        row["task"], box, mask))
        counts["annotations"] = annotations.count
        handle.write("}\n")
    return counts
