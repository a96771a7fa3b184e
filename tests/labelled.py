"""Annotation datasets for export and report tests: rows as jobs/annotate.py writes them, made
from synthetic shapes whose truth is known (so exports can be checked against it)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

from pipelines.devtools.shapes import write_shapes
from pipelines.review.reviewed import write_rows as write_annotation_rows
from pipelines.stages.read import image_id_for
from schemas.annotations import Rle
from schemas.rows import LabelRow

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
MODEL = "models/shapes-paligemma"


def write_rows(rows: list[LabelRow], output: Path) -> Path:
    """Hive-partitioned by task, like the pipeline's output, with its `_summary.json`."""
    return Path(write_annotation_rows(rows, str(output), {}))


def shapes_rows(shapes_dir: Path, count: int = 6, seed: int = 7) -> tuple[list[LabelRow], dict]:
    """Draw `count` shapes images and rows that predict exactly their truth (detect, segment and
    caption, with scores in (0, 1)), plus one unreadable image; returns (rows, ground truth)."""
    write_shapes(str(shapes_dir), count, seed, fmt="images")
    truth = json.loads((shapes_dir / "ground_truth.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    captions = {c["image_id"]: c["caption"] for c in truth["captions"]}
    rng = np.random.default_rng(seed)
    rows = []
    for image in truth["images"]:
        uri = str(shapes_dir / "images" / image["file_name"])
        common = dict(image_id=image_id_for(uri), source_uri=uri, width=image["width"], height=image["height"],
                      model=MODEL, status="ok", run_id="run-1", created_at=NOW)
        boxes, masks = [], []
        for ann in (a for a in truth["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            box = dict(label=names[ann["category_id"]], x_min=x, y_min=y, x_max=x + w, y_max=y + h,
                       score=float(rng.uniform(0.05, 0.95)))
            boxes.append(box)
            masks.append({**box, "score": float(rng.uniform(0.05, 0.95)), "rle": Rle(**ann["segmentation"])})
        rows.append(LabelRow(task="detect", prompt="detect circle ; square ; triangle", raw_output="...",
                             boxes=boxes, **common))
        rows.append(LabelRow(task="segment", prompt="segment circle ; square ; triangle", raw_output="...",
                             boxes=boxes, masks=masks, **common))
        rows.append(LabelRow(task="caption", prompt="caption en", raw_output=captions[image["id"]],
                             text=captions[image["id"]], text_score=float(rng.uniform(0.05, 0.95)), **common))
    broken = str(shapes_dir / "images" / "broken.png")
    rows.append(LabelRow(image_id=image_id_for(broken), source_uri=broken, task="detect",
                         prompt="detect circle ; square ; triangle", model=MODEL, status="image_error",
                         error="UnidentifiedImageError: cannot identify image file", run_id="run-1", created_at=NOW))
    return rows, truth
