"""Score an annotation dataset against COCO-format ground truth: COCO mAP for boxes and masks
(pycocotools), caption exact match and word accuracy, and row counts per task and status.

Rows and ground-truth images are joined first on the rows' `image_id`, where the ground truth kept it
(this project's exports write it: `data.image_id` in Label Studio tasks, `row_image_id` in COCO images),
then on the image's file name, the last part of the row's `source_uri` (`.../a.png`, `shard.tar#a.png`,
or a Parquet URI column holding `a.png`), so the same ground truth scores a run wherever its images were
stored. A ground truth that labelling tools wrote names its images by path (Label Studio:
`../data/images/a.png`, or `images/13c69b11__a.png` for an uploaded file): the name is the path's last
part, without Label Studio's upload prefix, and when two images share a name the longer common path
tail decides (`ImageIndex`).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
from collections import Counter, defaultdict

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pipelines.review.acceptance import acceptance, format_acceptance
from pipelines.review.calibration import format_calibration, score_calibration

UNSCORED = 1.0  # for boxes without a score (rows written before scores existed); COCOeval needs one to rank


def name_of(source_uri: str) -> str:
    """The file name a row's source URI ends with: after the last '/' and any '#'."""
    return re.split(r"[/#]", source_uri)[-1]


# Label Studio stores an uploaded file as `<8 hex digits>__<original name>`.
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}__")


def _path_parts(path: str) -> list[str]:
    """A path or URI's parts, last first, the file name without an upload prefix; no '.' or '..'."""
    parts = [part for part in re.split(r"[/#\\]", path) if part not in ("", ".", "..")]
    if parts:
        parts[-1] = UPLOAD_PREFIX.sub("", parts[-1])
    return parts[::-1]


def _common_tail(a: list[str], b: list[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


class ImageIndex:
    """Ground-truth image ids by row (a dict with `source_uri`, and `image_id` where read): the image
    whose `row_image_id` is the row's `image_id`; else the one named like the file the row's
    `source_uri` ends with, and among several of that name, the one sharing the longest path tail with
    it. Two that cannot be told apart raise ValueError, naming both."""

    def __init__(self, images: list[dict]):
        self.by_name: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
        self.by_row_id: dict[str, int] = {}
        for image in images:
            parts = _path_parts(image["file_name"])
            self.by_name[parts[0] if parts else ""].append((parts, image["id"]))
            if row_id := image.get("row_image_id"):
                if row_id in self.by_row_id:
                    raise ValueError(f"two ground-truth images (ids {self.by_row_id[row_id]} and {image['id']}) "
                                     f"name the same image_id {row_id!r}")
                self.by_row_id[row_id] = image["id"]
        self.names = {image["id"]: _path_parts(image["file_name"])[0] for image in images}
        self._cache: dict[tuple[str, str | None], int | None] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __call__(self, row: dict) -> int | None:
        key = (row["source_uri"], row.get("image_id"))
        if key not in self._cache:
            by_id = self.by_row_id.get(key[1])
            self._cache[key] = by_id if by_id is not None else self._find(key[0])
        return self._cache[key]

    def _find(self, source_uri: str) -> int | None:
        parts = _path_parts(source_uri)
        candidates = self.by_name.get(parts[0] if parts else "", [])
        if len(candidates) <= 1:
            return candidates[0][1] if candidates else None
        tails = sorted(((_common_tail(parts, image_parts), image_id) for image_parts, image_id in candidates),
                       reverse=True)
        if tails[0][0] == tails[1][0]:
            raise ValueError(f"{source_uri!r} matches two ground-truth images equally well (ids {tails[0][1]} and "
                             f"{tails[1][1]}, both named {parts[0]!r}): give the ground truth paths that tell "
                             "them apart")
        return tails[0][1]


def _ground_truth_index(ground_truth: dict) -> COCO:
    coco = COCO()
    coco.dataset = ground_truth
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def coco_results(rows: list[dict], field: str, image_ids: ImageIndex, category_ids: dict[str, int]) -> list[dict]:
    """The `boxes` or `masks` of rows as COCO result records (bbox [x, y, w, h] or RLE)."""
    results = []
    for row in rows:
        image_id = image_ids(row)
        if image_id is None:
            continue
        for item in row[field] or []:
            if item["label"] not in category_ids:
                continue
            record = {"image_id": image_id, "category_id": category_ids[item["label"]],
                      "score": UNSCORED if item["score"] is None else item["score"]}
            if field == "masks":
                record["segmentation"] = {"size": list(item["rle"]["size"]), "counts": item["rle"]["counts"]}
            else:
                record["bbox"] = [item["x_min"], item["y_min"], item["x_max"] - item["x_min"],
                                  item["y_max"] - item["y_min"]]
            results.append(record)
    return results


def coco_average_precision(ground_truth: COCO, results: list[dict], iou_type: str) -> dict:
    """mAP@[.5:.95], mAP@.5 and AP per class over every ground-truth image."""
    names = {c["id"]: c["name"] for c in ground_truth.dataset["categories"]}
    if not results:
        return {"mAP": 0.0, "mAP_50": 0.0, "per_class_AP": dict.fromkeys(names.values(), 0.0), "predictions": 0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iou_type)
        evaluator.params.imgIds = sorted(ground_truth.getImgIds())  # images without predictions count
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # precision: [IoU threshold, recall, category, area range (0 = all), max detections (-1 = 100)]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        per_class[names[category_id]] = float(values[values > -1].mean()) if (values > -1).any() else None
    return {"mAP": float(evaluator.stats[0]), "mAP_50": float(evaluator.stats[1]), "per_class_AP": per_class,
            "predictions": len(results)}


def normalise_caption(text: str | None) -> list[str]:
    """Words of a caption, lower-cased, without punctuation at the ends."""
    return (text or "").casefold().strip(" .!").split()


def word_accuracy(predicted: list[str], expected: list[str]) -> float:
    """Words matched in order (difflib), over the longer of the two: 1.0 only for the same words."""
    if not predicted and not expected:
        return 1.0
    matched = sum(block.size for block in difflib.SequenceMatcher(a=predicted, b=expected).get_matching_blocks())
    return matched / max(len(predicted), len(expected))


def caption_scores(rows: list[dict], captions: dict[int, str], image_ids: ImageIndex) -> dict:
    """Exact match and mean word accuracy over ground-truth captions; a missing row scores 0."""
    predicted = {image_ids(r): r["text"] for r in rows}
    exact, words = [], []
    for image_id, caption in captions.items():
        guess, truth = normalise_caption(predicted.get(image_id)), normalise_caption(caption)
        exact.append(guess == truth)
        words.append(word_accuracy(guess, truth))
    return {"exact_match": float(np.mean(exact)) if exact else None,
            "word_accuracy": float(np.mean(words)) if words else None, "captions": len(captions)}


def truth_of_task(ground_truth: dict, task: str) -> dict:
    """The ground truth a task is scored against: where annotations name their `task` (this project's COCO
    export does), only that task's; otherwise all of them."""
    if not any("task" in annotation for annotation in ground_truth["annotations"]):
        return ground_truth
    return ground_truth | {"annotations": [a for a in ground_truth["annotations"] if a.get("task") == task]}


def evaluate_rows(rows: list[dict], ground_truth: dict, tasks: tuple[str, ...] = ()) -> dict:
    """The full report for annotation rows (dicts with LabelRow's columns) against COCO ground truth.
    `tasks`: the tasks the ground truth is for (empty: every task it can score); rows of other tasks are
    counted, not scored (a COCO file without `task` attributes otherwise scores detect and segment alike)."""
    image_ids = ImageIndex(ground_truth["images"])
    category_ids = {category["name"]: category["id"] for category in ground_truth["categories"]}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)

    report: dict = {
        "images": len(image_ids),
        "rows": len(rows),
        "rows_per_task_and_status": {task: dict(Counter(r["status"] for r in task_rows))
                                     for task, task_rows in sorted(by_task.items())},
        "unknown_images": len({r["source_uri"] for r in rows if image_ids(r) is None}),
    }
    if tasks:
        if unscored := sorted(set(by_task) - set(tasks)):
            report["notes"] = [f"the ground truth is for {', '.join(tasks)}: {', '.join(unscored)} not scored"]
        by_task = defaultdict(list, {task: task_rows for task, task_rows in by_task.items() if task in tasks})
        rows = [row for task_rows in by_task.values() for row in task_rows]
    for task, task_rows in sorted(by_task.items()):
        seen = {image_ids(r) for r in task_rows}
        report.setdefault("missing_images", {})[task] = len(set(image_ids.names) - seen)
    if by_task.get("detect"):
        report["detect"] = coco_average_precision(_ground_truth_index(truth_of_task(ground_truth, "detect")),
                                                  coco_results(by_task["detect"], "boxes", image_ids, category_ids),
                                                  "bbox")
    if by_task.get("segment"):
        truth = truth_of_task(ground_truth, "segment")
        report["segment_boxes"] = coco_average_precision(
            _ground_truth_index(truth), coco_results(by_task["segment"], "boxes", image_ids, category_ids), "bbox")
        # Objects drawn as boxes only have no mask to score against (pycocotools cannot read `[]`).
        with_masks = [a for a in truth["annotations"] if a.get("segmentation")]
        if with_masks:
            report["segment_masks"] = coco_average_precision(
                _ground_truth_index(truth | {"annotations": with_masks}),
                coco_results(by_task["segment"], "masks", image_ids, category_ids), "segm")
            report["segment_masks"]["objects_without_mask"] = len(truth["annotations"]) - len(with_masks)
        else:
            report.setdefault("notes", []).append("the ground truth has boxes only: segment masks are not scored")
    if by_task.get("caption"):
        captions = {c["image_id"]: c["caption"] for c in ground_truth.get("captions", [])}
        report["caption"] = caption_scores(by_task["caption"], captions, image_ids)
    truths = {task: truth_of_task(ground_truth, task) for task in ("detect", "segment") if by_task.get(task)}
    if calibration := score_calibration(rows, truths, image_ids):
        report["score_calibration"] = calibration
    if accepted := acceptance(rows, ground_truth, image_ids):
        report["acceptance"] = accepted
    return report


def format_report(report: dict) -> str:
    """A plain-text table of the headline numbers."""
    lines = [f"{report['rows']} rows for {report['images']} ground-truth images"]
    for task, counts in report["rows_per_task_and_status"].items():
        status = " ".join(f"{name}={n}" for name, n in sorted(counts.items()))
        missing = report.get("missing_images", {}).get(task)
        lines.append(f"  {task:<10} {status}  " + (f"(missing images: {missing})" if missing is not None
                                                      else "(not scored)"))
    for key in ("detect", "segment_boxes", "segment_masks"):
        if key in report:
            scores = report[key]
            per_class = ", ".join(f"{name} {ap:.3f}" if ap is not None else f"{name} -"
                                  for name, ap in scores["per_class_AP"].items())
            lines.append(f"{key:<14} mAP@[.5:.95] {scores['mAP']:.3f}  mAP@.5 {scores['mAP_50']:.3f}  [{per_class}]")
    if report.get("caption", {}).get("captions"):
        caption = report["caption"]
        lines.append(f"{'caption':<14} exact match {caption['exact_match']:.3f}  "
                     f"word accuracy {caption['word_accuracy']:.3f}  ({caption['captions']} captions)")
    lines += format_calibration(report.get("score_calibration", {}))
    lines += format_acceptance(report.get("acceptance", {}))
    lines += [f"note: {note}" for note in report.get("notes", [])]
    return "\n".join(lines)


def side_by_side(rows: list[dict], ground_truth: dict, limit: int) -> list[dict]:
    """Predictions next to the truth for the first `limit` images (by file name): per detect or
    segment box, the ground-truth box of the same label it overlaps most and their IoU; per
    caption, the true caption. For reading a run by eye; the scores above are the measurement."""
    truth = _ground_truth_index(ground_truth)
    image_ids = ImageIndex(ground_truth["images"])
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    captions = {c["image_id"]: c["caption"] for c in ground_truth.get("captions", [])}
    matched = sorted({(name_of(r["source_uri"]), r["source_uri"]) for r in rows if image_ids(r)})
    shown = {uri for _, uri in matched[:limit]}
    lines = []
    for row in sorted(rows, key=lambda r: (name_of(r["source_uri"]), r["task"])):
        if row["source_uri"] not in shown:
            continue
        name, image_id = name_of(row["source_uri"]), image_ids(row)
        if row["task"] == "caption":
            lines.append({"image": name, "task": "caption", "predicted": row["text"], "truth": captions.get(image_id)})
            continue
        for box in row["boxes"] or []:
            xywh = [box["x_min"], box["y_min"], box["x_max"] - box["x_min"], box["y_max"] - box["y_min"]]
            same_label = [a for a in truth.imgToAnns[image_id] if names[a["category_id"]] == box["label"]]
            ious = mask_utils.iou([xywh], [a["bbox"] for a in same_label], [0] * len(same_label))
            best = int(np.argmax(ious)) if same_label else None
            lines.append({"image": name, "task": row["task"], "label": box["label"], "predicted": xywh,
                          "truth": None if best is None else same_label[best]["bbox"],
                          "iou": None if best is None else float(np.ravel(ious)[best])})
    return lines


def format_side_by_side(lines: list[dict]) -> str:
    """One line per predicted box or caption: image, task, label, predicted vs true [x, y, w, h], IoU."""
    def box(xywh) -> str:
        return "-" if xywh is None else "[" + ", ".join(f"{v:.0f}" for v in xywh) + "]"

    out = [f"{'image':<22} {'task':<8} {'label':<9} {'predicted [x, y, w, h]':<24} {'truth':<24} IoU"]
    for line in lines:
        if line["task"] == "caption":
            out.append(f"{line['image']:<22} caption  {line['predicted']!r} (truth: {line['truth']!r})")
        else:
            iou = "-" if line["iou"] is None else f"{line['iou']:.2f}"
            out.append(f"{line['image']:<22} {line['task']:<8} {line['label']:<9} {box(line['predicted']):<24} "
                       f"{box(line['truth']):<24} {iou}")
    return "\n".join(out)
