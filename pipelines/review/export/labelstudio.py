"""Label Studio pre-annotations: one task per image, its one prediction holding every row's regions,
and the labelling config that matches them.

Each task's `data.image` is the image's URL (its `source_uri`, mapped by `UrlMap`); `data` also says
which rows were not `ok` and why (`problems`, `errors`), so a failed task is seen, not missing. The
prediction carries the model as `model_version`, a task `score` (`TaskScores`: the Data Manager
sorts by it, lowest first) and the regions, one control per task kind or text prompt:

    <View>
      <Text name="errors" value="$errors"/>                  problems of the image's rows, if any
      <Image name="image" value="$image"/>
      <RectangleLabels name="detect" toName="image">...</RectangleLabels>     detect boxes
      <BrushLabels name="segment" toName="image">...</BrushLabels>            segment masks
      <RectangleLabels name="segment_box" toName="image">...</RectangleLabels> segment objects without a mask
      <Header value="caption en"/><TextArea name="caption_en" toName="image"/>  one per text task and prompt
    </View>

Rectangles are in percent of the original image, brushes in Label Studio's own brush RLE.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import defaultdict
from xml.sax.saxutils import quoteattr

import fsspec
import numpy as np

from pipelines.review.export.brush import mask_to_brush_rle
from pipelines.review.export.jsonstream import JsonArrayWriter, ShardedArrayWriter
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap, iter_images, iter_rows, objects_of
from schemas.annotations import Rle

IMAGE = "image"
ERRORS = "errors"
BOXES = {"detect": "detect", "segment": "segment_box"}  # task -> RectangleLabels control
BRUSHES = "segment"  # the BrushLabels control of segment masks
COLUMNS = ["image_id", "source_uri", "width", "height", "task", "prompt", "model", "status", "error",
           "boxes", "masks", "text", "text_score", "run_id"]
MAX_NAME = 48
HISTOGRAM_BINS = 1000


def text_control(task: str, prompt: str) -> str:
    """The TextArea name of a text task's prompt: the prompt in lower-case words joined by `_`, led by
    the task (`caption en` -> `caption_en`, `answer en how many cars?` -> `answer_en_how_many_cars`);
    a long one is cut and ends with 8 hex digits of its hash, so names stay unique."""
    slug = re.sub(r"[^0-9a-z]+", "_", prompt.casefold()).strip("_")
    name = slug if slug == task or slug.startswith(task + "_") else f"{task}_{slug}".rstrip("_")
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 9].rstrip("_") + "_" + hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8]
    return name


def _percent(value: float, total: int) -> float:
    return 100.0 * value / total


def _region(number: int, kind: str, from_name: str, row: dict, value: dict, score: float | None) -> dict:
    region = {"id": f"r{number}", "type": kind, "from_name": from_name, "to_name": IMAGE,
              "original_width": row["width"], "original_height": row["height"], "image_rotation": 0,
              "value": value}
    if score is not None:
        region["score"] = score
    return region


def scored_controls(row: dict, row_filter: RowFilter = RowFilter()) -> list[tuple[str, str, float | None]]:
    """(control, label or None, score) of each region the row gives, without building the regions."""
    if row["width"] is None:
        return []
    found = [(BRUSHES if mask is not None else BOXES.get(row["task"], "detect"), box["label"],
              (mask or box)["score"]) for box, mask in objects_of(row, row_filter)]
    if row["text"] and row_filter.keeps(row["text_score"]):
        found.append((text_control(row["task"], row["prompt"]), None, row["text_score"]))
    return found


def row_regions(row: dict, first: int = 0, row_filter: RowFilter = RowFilter()) -> list[dict]:
    """The row's regions (ids from `first`): rectangles, brushes and its text area."""
    if row["width"] is None:  # an unreadable image: nothing to place regions on
        return []
    regions = []
    for box, mask in objects_of(row, row_filter):
        number = first + len(regions)
        if mask is not None:
            pixels = Rle.model_construct(size=mask["rle"]["size"], counts=mask["rle"]["counts"]).to_binary()
            value = {"format": "rle", "rle": mask_to_brush_rle(pixels), "brushlabels": [mask["label"]]}
            regions.append(_region(number, "brushlabels", BRUSHES, row, value, mask["score"]))
            continue
        w, h = row["width"], row["height"]
        value = {"x": _percent(box["x_min"], w), "y": _percent(box["y_min"], h),
                 "width": _percent(box["x_max"] - box["x_min"], w), "height": _percent(box["y_max"] - box["y_min"], h),
                 "rotation": 0, "rectanglelabels": [box["label"]]}
        regions.append(_region(number, "rectanglelabels", BOXES.get(row["task"], "detect"), row, value, box["score"]))
    if row["text"] and row_filter.keeps(row["text_score"]):
        regions.append(_region(first + len(regions), "textarea", text_control(row["task"], row["prompt"]), row,
                               {"text": [row["text"]]}, row["text_score"]))
    return regions


class TaskScores:
    """The task score, lowest first for the images most in need of review: `1 / (1 + sum(1 - rank))`
    over the image's scored regions, where a region's rank is where its score stands among the
    export's scores of the same control (its empirical CDF, from a histogram of `HISTOGRAM_BINS`
    bins per control); 0.0 when a row of the image is not `ok` or the image has no region at all.

    Raw scores do not all compare across controls (box and mask scores read as the chance the object
    is right, text scores are geometric means of token probabilities), so a rank within its own
    control says "this region is among the x% least sure of its kind", and `1 - rank` counts it as
    that much doubt; the sum is the image's expected number of doubtful regions, so an image with
    many unsure objects comes before one with a single one. Measured against other rules on held-out
    shapes scenes in docs/exports.md ("Review order"): as good as any there; means and products of
    raw scores come close only through the task mix (every image had the same three tasks), which a
    scale-free rule does not depend on.
    """

    def __init__(self):
        self.histograms: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(HISTOGRAM_BINS, np.int64))

    @staticmethod
    def _bin(score: float) -> int:
        return min(HISTOGRAM_BINS - 1, max(0, int(score * HISTOGRAM_BINS)))

    def add(self, control: str, score: float | None) -> None:
        if score is not None:
            self.histograms[control][self._bin(score)] += 1

    def rank(self, control: str, score: float) -> float:
        """Share of the control's scores below `score` (half of those in its bin), in [0, 1]."""
        counts = self.histograms.get(control)
        if counts is None or not counts.sum():
            return 0.0
        k = self._bin(score)
        return float((counts[:k].sum() + counts[k] / 2) / counts.sum())

    def task_score(self, rows: list[dict], regions: list[dict]) -> float:
        if any(row["status"] != "ok" for row in rows):
            return 0.0
        if not regions:
            return 0.0
        doubt = sum(1.0 - self.rank(region["from_name"], region["score"]) for region in regions if "score" in region)
        return 1.0 / (1.0 + doubt)


def image_task(rows: list[dict], scores: TaskScores, row_filter: RowFilter = RowFilter(),
               urls: UrlMap = UrlMap()) -> dict:
    """One image's rows (dicts of LabelRow's columns) -> one Label Studio task with one prediction."""
    regions: list[dict] = []
    for row in rows:
        regions.extend(row_regions(row, len(regions), row_filter))
    failed = [row for row in rows if row["status"] != "ok"]
    first = rows[0]
    data = {IMAGE: urls.url(first["source_uri"]), "image_id": first["image_id"], "source_uri": first["source_uri"],
            "run_id": first["run_id"], "tasks": ", ".join(sorted({row["task"] for row in rows})),
            "problems": len(failed),
            ERRORS: "\n".join(f"{row['task']} [{row['prompt']}]: {row['status']}"
                              + (f": {row['error']}" if row["error"] else "") for row in failed)}
    models = sorted({row["model"] for row in rows})
    prediction = {"model_version": ", ".join(models), "score": scores.task_score(rows, regions), "result": regions}
    return {"data": data, "predictions": [prediction]}


def label_config(labels: dict[str, set[str]], prompts: dict[str, str]) -> str:
    """The labelling config for these controls: `labels` maps rectangle and brush controls to their
    labels, `prompts` maps text controls to the prompt they answer (shown above the text area)."""
    # the errors first, so an annotator sees why a task has fewer regions before looking at the image
    lines = ["<View>", f'  <Text name="{ERRORS}" value="${ERRORS}"/>',
             f'  <Image name="{IMAGE}" value="${IMAGE}" zoom="true"/>']
    kinds = (("detect", "RectangleLabels"), (BRUSHES, "BrushLabels"), (BOXES["segment"], "RectangleLabels"))
    for control, tag in kinds:
        if labels.get(control):
            names = "".join(f"<Label value={quoteattr(label)}/>" for label in sorted(labels[control]))
            lines.append(f'  <Header value="{control}"/>')
            lines.append(f'  <{tag} name="{control}" toName="{IMAGE}">{names}</{tag}>')
    for control, prompt in sorted(prompts.items()):
        lines.append(f"  <Header value={quoteattr(prompt)}/>")
        lines.append(f'  <TextArea name="{control}" toName="{IMAGE}" editable="true" maxSubmissions="1"/>')
    lines.append("</View>")
    return "\n".join(lines) + "\n"


def export_labelstudio(
    uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
    batch_size: int = DEFAULT_BATCH_SIZE, config_output: str | None = None, shard_size: int | None = None,
) -> dict[str, int]:
    """Stream the dataset at `uri` into a Label Studio tasks file at `output` (one task per image) and,
    with `config_output`, its labelling config; returns the counts written. With `shard_size`, `output`
    is a folder (or bucket prefix) that gets files of at most `shard_size` tasks each
    (`tasks-00000.json`, ...), which Label Studio's source storage imports one task list per file.

    Two passes: the first learns each control's labels, prompts and score distribution, the second
    groups the rows by image (`iter_images`) and writes the tasks."""
    scores, labels, prompts = TaskScores(), defaultdict(set), {}
    for rows in iter_rows(uri, COLUMNS, row_filter, batch_size):
        for row in rows:
            for control, label, score in scored_controls(row, row_filter):
                scores.add(control, score)
                if label is None:
                    prompts[control] = row["prompt"]
                else:
                    labels[control].add(label)
    counts = {"tasks": 0, "rows": 0, "regions": 0, "rows_not_ok": 0}
    with contextlib.ExitStack() as stack:
        if shard_size:
            tasks = stack.enter_context(ShardedArrayWriter(output, "tasks", shard_size))
        else:
            tasks = stack.enter_context(JsonArrayWriter(stack.enter_context(fsspec.open(output, "w"))))
        for rows in iter_images(uri, COLUMNS, row_filter, batch_size):
            task = image_task(rows, scores, row_filter, urls)
            tasks.write(task)
            counts["rows"] += len(rows)
            counts["regions"] += len(task["predictions"][0]["result"])
            counts["rows_not_ok"] += task["data"]["problems"]
    counts["tasks"] = tasks.count
    counts["files"] = len(tasks.paths) if shard_size else 1
    if config_output is not None:
        with fsspec.open(config_output, "w") as handle:
            handle.write(label_config(labels, prompts))
    return counts
