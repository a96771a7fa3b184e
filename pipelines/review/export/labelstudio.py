"""Label Studio pre-annotations: a JSON list of tasks, one per annotation row, with predictions.

Each task's `data.image` is the row's image URL (its `source_uri`, mapped by `UrlMap`), and its
one prediction carries the model as `model_version`, a `score` (the mean of its regions' scores,
by which Label Studio's Data Manager sorts, lowest first) and the regions:
`rectanglelabels` for boxes (percent of the original image), `brushlabels` for masks (Label
Studio's brush RLE), `textarea` for text. The names match this labelling config:

    <View>
      <Image name="image" value="$image"/>
      <RectangleLabels name="label" toName="image">...</RectangleLabels>
      <BrushLabels name="brush" toName="image">...</BrushLabels>
      <TextArea name="caption" toName="image"/>   (one per text task: caption, ocr, answer, question)
    </View>
"""

from __future__ import annotations

import fsspec
import numpy as np

from pipelines.review.export.brush import mask_to_brush_rle
from pipelines.review.export.jsonstream import JsonArrayWriter
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap, iter_rows, objects_of
from schemas.annotations import Rle

IMAGE = "image"
RECTANGLES = "label"
BRUSHES = "brush"
COLUMNS = ["image_id", "source_uri", "width", "height", "task", "prompt", "model", "status", "error",
           "boxes", "masks", "text", "text_score", "run_id"]


def _percent(value: float, total: int) -> float:
    return 100.0 * value / total


def _region(number: int, kind: str, from_name: str, row: dict, value: dict, score: float | None) -> dict:
    region = {"id": f"r{number}", "type": kind, "from_name": from_name, "to_name": IMAGE,
              "original_width": row["width"], "original_height": row["height"], "image_rotation": 0,
              "value": value}
    if score is not None:
        region["score"] = score
    return region


def row_to_task(row: dict, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap()) -> dict:
    """One annotation row (a dict of LabelRow's columns) -> one Label Studio task."""
    regions = []
    for box, mask in objects_of(row, row_filter):
        if mask is not None:
            pixels = Rle.model_construct(size=mask["rle"]["size"], counts=mask["rle"]["counts"]).to_binary()
            value = {"format": "rle", "rle": mask_to_brush_rle(pixels), "brushlabels": [mask["label"]]}
            regions.append(_region(len(regions), "brushlabels", BRUSHES, row, value, mask["score"]))
            continue
        w, h = row["width"], row["height"]
        value = {"x": _percent(box["x_min"], w), "y": _percent(box["y_min"], h),
                 "width": _percent(box["x_max"] - box["x_min"], w), "height": _percent(box["y_max"] - box["y_min"], h),
                 "rotation": 0, "rectanglelabels": [box["label"]]}
        regions.append(_region(len(regions), "rectanglelabels", RECTANGLES, row, value, box["score"]))
    if row["text"] and row_filter.keeps(row["text_score"]):
        regions.append(_region(len(regions), "textarea", row["task"], row, {"text": [row["text"]]}, row["text_score"]))
    prediction: dict = {"model_version": row["model"], "result": regions}
    scores = [region["score"] for region in regions if "score" in region]
    if scores:
        prediction["score"] = float(np.mean(scores))
    data = {IMAGE: urls.url(row["source_uri"]), **{name: row[name] for name in
            ("image_id", "source_uri", "task", "prompt", "status", "error", "run_id")}}
    return {"data": data, "predictions": [prediction]}


def export_labelstudio(
    uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Stream the dataset at `uri` into a Label Studio tasks file at `output`; returns the task count."""
    with fsspec.open(output, "w") as handle, JsonArrayWriter(handle) as tasks:
        for rows in iter_rows(uri, COLUMNS, row_filter, batch_size):
            for row in rows:
                tasks.write(row_to_task(row, row_filter, urls))
    return tasks.count
