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
the labels in name order from 1. Each image also names its rows' `image_id` (`row_image_id`), which
`jobs/evaluate.py` joins on first when the file comes back as ground truth.

`layout="datumaro"` writes the folder upstream datumaro (CVAT's format engine) imports as
`coco_instances`: `annotations/instances_<subset>.json` beside `images/<subset>/<file_name>`, the
images copied there; one subset per shard, or `default`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile

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
    source_bytes,
)
from pipelines.tasks.registry import TASKS

LAYOUTS = ("file", "datumaro")
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
            "source_uri": row["source_uri"], "row_image_id": row["image_id"]}


class ImageCopies:
    """Copies each exported image's file to `folder/<file_name>` (datumaro's `images/<subset>/`); an image
    that cannot be fetched (a Parquet row, a file gone) is counted, and the first one's reason kept in
    `counts["first_image_not_copied"]`, not fatal."""

    def __init__(self, counts: dict):
        self.counts = counts
        counts.update(images_copied=0, images_not_copied=0)

    def copy(self, image: dict, folder: str) -> None:
        try:
            data = source_bytes(image["source_uri"])
            with fsspec.open(f"{folder.rstrip('/')}/{image['file_name']}", "wb", auto_mkdir=True) as handle:
                handle.write(data)
            self.counts["images_copied"] += 1
        except (OSError, ValueError, KeyError, tarfile.TarError) as err:
            self.counts["images_not_copied"] += 1
            self.counts.setdefault("first_image_not_copied", f"{image['source_uri']}: {err}")


def datumaro_paths(folder: str, subset: str) -> tuple[str, str]:
    """(annotation file, images folder) of one subset in datumaro's COCO layout."""
    folder = folder.rstrip("/")
    return f"{folder}/annotations/instances_{subset}.json", f"{folder}/images/{subset}"


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
    batch_size: int = DEFAULT_BATCH_SIZE, layout: str = "file",
) -> dict[str, int]:
    """The COCO export as files of at most `shard_size` images each (`folder/coco-00000.json`, ...; with
    the datumaro layout `folder/annotations/instances_coco-00000.json` and the images), one labelling
    job's worth apiece: every file a whole COCO dataset with all the categories (the same ids in every
    file), and annotation ids unique across files, so the files together are exactly the single-file
    export. Memory holds one shard's images and annotations."""
    if shard_size < 1:
        raise ValueError(f"a shard holds at least one image, not {shard_size}")
    row_filter = _object_filter(row_filter)
    root, categories = _root_and_labels(uri, row_filter, batch_size)
    info = {"description": f"paligemma-labeller export of {uri}"}
    category_list = [{"id": number, "name": label, "supercategory": ""} for label, number in categories.items()]
    counts = {"images": 0, "annotations": 0, "categories": len(categories), "files": 0}
    copies = ImageCopies(counts) if layout == "datumaro" else None
    images: list[dict] = []
    annotations: list[dict] = []

    def flush() -> None:
        path = shard_path(folder, "coco", counts["files"])
        if copies is not None:
            path, images_folder = datumaro_paths(folder, posixpath.basename(path).removesuffix(".json"))
            for image in images:
                copies.copy(image, images_folder)
        with fsspec.open(path, "w", auto_mkdir=True) as handle:
            json.dump({"info": info, "images": images, "categories": category_list, "annotations": annotations},
                      handle, separators=(",", ":"))
        counts["files"] += 1
        counts["images"] += len(images)
        counts["annotations"] += len(annotations)
        images.clear()
        annotations.clear()

    columns = ["image_id", "source_uri", "width", "height", "boxes", "masks"]
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
    batch_size: int = DEFAULT_BATCH_SIZE, layout: str = "file",
) -> dict[str, int]:
    """Stream the dataset at `uri` into a COCO JSON file at `output` (with the datumaro layout, `output`
    is the dataset's folder); returns the counts written."""
    row_filter = _object_filter(row_filter)
    images_folder = None
    if layout == "datumaro":
        output, images_folder = datumaro_paths(output, "default")
    labels: set[str] = set()
    seen: set[int] = set()
    counts = {"images": 0, "annotations": 0, "categories": 0}
    copies = ImageCopies(counts) if images_folder else None
    root: str | None = None  # the images' common directory; file_name is the path below it
    for rows in iter_rows(uri, ["source_uri", "width"], row_filter, batch_size):
        uris = [row["source_uri"] for row in rows if row["width"] is not None]
        if uris:
            root = common_root(uris if root is None else [root, *uris])
    with fsspec.open(output, "w", auto_mkdir=True) as handle:
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
                    record = image_record(row, root, urls)
                    images.write(record)
                    if copies is not None:
                        copies.copy(record, images_folder)
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
