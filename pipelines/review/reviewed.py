"""The annotators' final labels as an annotation dataset in the project's own row schema.

Each predicted row of a reviewed image (one per image, task and prompt) gets a reviewed twin with the
same `image_id`, `source_uri`, size, `task` and `prompt`, so predictions and reviews join on those
columns (DuckDB, pandas, Spark), and a reviewed set can evaluate or train the next model: its boxes,
masks and captions are the ground truth's (a reviewed file read back by `pipelines.review.ground_truth`),
without scores (a person drew them), and `model` names the reviewer. Images the review did not cover
are left out. Written hive-partitioned by task with `_summary.json`, as `jobs/annotate.py` writes.
"""

from __future__ import annotations

import datetime
import json
from collections import defaultdict

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads

from pipelines.review.calibration import truth_region
from pipelines.storage.output import SUMMARY_FILE
from schemas.annotations import Box, Mask, Rle
from schemas.rows import LABEL_ROW_SCHEMA, LabelRow, Status

OBJECT_TASKS = ("detect", "segment")


def reviewed_rows(rows: list[dict], ground_truth: dict, image_id_of, reviewer: str, run_id: str) -> list[LabelRow]:
    """A reviewed row per predicted row (dicts with LabelRow's columns) whose image the ground truth holds."""
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    objects = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        objects[(annotation["image_id"], annotation.get("task"))].append(annotation)
    captions = {c["image_id"]: c["caption"] for c in ground_truth.get("captions", [])}
    now = datetime.datetime.now(datetime.timezone.utc)
    reviewed = []
    for row in rows:
        image_id = image_id_of(row)
        if image_id is None or row["width"] is None:
            continue
        fields = {"image_id": row["image_id"], "source_uri": row["source_uri"], "width": row["width"],
                  "height": row["height"], "task": row["task"], "prompt": row["prompt"], "model": reviewer,
                  "status": Status.OK, "run_id": run_id, "created_at": now}
        if row["task"] in OBJECT_TASKS:
            final = objects.get((image_id, row["task"])) or objects.get((image_id, None), [])
            fields["boxes"] = [_box(a, names) for a in final]
            if row["task"] == "segment":
                fields["masks"] = [Mask(**_box(a, names).model_dump(), rle=_rle(a, row)) for a in final
                                   if a.get("segmentation")]
        elif row["task"] == "caption" and image_id in captions:
            fields["text"] = captions[image_id]
        else:
            continue  # a task the review does not hold
        reviewed.append(LabelRow(**fields))
    return reviewed


def _box(annotation: dict, names: dict[int, str]) -> Box:
    x, y, w, h = annotation["bbox"]
    return Box(label=names[annotation["category_id"]], x_min=x, y_min=y, x_max=x + w, y_max=y + h)


def _rle(annotation: dict, row: dict) -> Rle:
    region = truth_region(annotation, row["height"], row["width"])
    counts = region["counts"]
    return Rle(size=[int(v) for v in region["size"]], counts=counts.decode("ascii") if isinstance(counts, bytes)
               else counts)


def write_rows(rows: list[LabelRow], uri: str, summary: dict | None = None) -> str:
    """Rows as an annotation dataset at `uri` (hive-partitioned by task), `_summary.json` last."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    table = pa.Table.from_pylist([row.model_dump() for row in rows], schema=LABEL_ROW_SCHEMA)
    pads.write_dataset(table, path, filesystem=filesystem, format="parquet", partitioning=["task"],
                       partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore")
    with filesystem.open(f"{path.rstrip('/')}/{SUMMARY_FILE}", "w") as handle:
        handle.write(json.dumps(summary or {"rows": len(rows)}) + "\n")
    return uri
