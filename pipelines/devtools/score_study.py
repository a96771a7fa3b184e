"""How well box and mask scores read as the chance an object is right: the current rule and the earlier
ones side by side, on the same answers.

The pipeline's own stages run in this process, without Ray (read image files, decode, the model stage,
validation), once; the generated columns are labelled under each rule of `RULES` (before issue 30: the
least sure `<loc>` token times the label for boxes, the geometric mean of the entry's tokens for masks;
its location shares without the discount of repeated boxes; today's), so they differ in their scores
only. Each is scored against the ground truth with
`pipelines.review.calibration` (AUROC right vs wrong, medians, reliability, ECE), COCO mAP, and the
image-level AUROC of the Label Studio task score (an image is wrong when one of its boxes is).

    python -m pipelines.devtools.score_study --images out/noisy/images --ground-truth out/noisy/ground_truth.json \\
        --model tests/data/shapes-paligemma --classes circle,square,triangle --output out/score-study.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.model.checkpoint import find_vae
from pipelines.model.load import image_size_of, load_processor
from pipelines.parse import detection, segmentation
from pipelines.parse.entries import Entry
from pipelines.parse.scores import TokenLogprobs
from pipelines.review.calibration import RIGHT_IOU, auroc, right_or_wrong
from pipelines.review.evaluate import ImageIndex, evaluate_rows
from pipelines.review.export.labelstudio import TaskScores, row_regions, scored_controls
from pipelines.stages.decode import decode_rows
from pipelines.stages.generate import GenerateStage
from pipelines.stages.label import to_label_table
from schemas import columns as C
from schemas.job import PromptOptions

TASKS = ["detect", "segment"]


def earlier_box_score(entry: Entry, tokens: TokenLogprobs | None) -> float | None:
    """The rule before issue 30: the least sure `<loc>` token's probability times the label's."""
    if tokens is None:
        return None
    locs = tokens.tokens_in([entry.loc_span])
    if not len(locs):
        return None
    log_label = tokens.log_probability([entry.span], excluding=[entry.loc_span, entry.seg_span])
    return min(1.0, math.exp(float(np.min(tokens.logprobs[locs])) + log_label))


def earlier_mask_score(entry: Entry, tokens: TokenLogprobs | None) -> float | None:
    """The mask rule before issue 30: the geometric mean probability of all the entry's tokens."""
    return tokens.score_of([entry.span]) if tokens is not None else None


def no_repeat_discounts(boxes) -> list[float]:
    return [1.0] * len(boxes)


@contextlib.contextmanager
def rules(box=None, mask=None, repeats=None) -> Iterator[None]:
    """Parse with other scoring rules (this study only: the pipeline has one rule); None keeps a rule."""
    saved = (detection.box_score, segmentation.box_score, segmentation.mask_score, detection.repeat_discounts,
             segmentation.repeat_discounts)
    if box is not None:
        detection.box_score = segmentation.box_score = box
    if mask is not None:
        segmentation.mask_score = mask
    if repeats is not None:
        detection.repeat_discounts = segmentation.repeat_discounts = repeats
    try:
        yield
    finally:
        (detection.box_score, segmentation.box_score, segmentation.mask_score, detection.repeat_discounts,
         segmentation.repeat_discounts) = saved


# The rules compared, on the same answers: before issue 30, its location-share rule alone, and today's
# (that rule and the discount of a box repeating an earlier one).
RULES = {
    "earlier": lambda: rules(earlier_box_score, earlier_mask_score, no_repeat_discounts),
    "shares": lambda: rules(repeats=no_repeat_discounts),
    "current": contextlib.nullcontext,
}


def generate_columns(images: list[Path], model: str, options: PromptOptions, batch_size: int) -> tuple[pa.Table, float]:
    """The model stage's output for every image and task (one pass), and the seconds it took."""
    processor = load_processor(model)
    size, resample = image_size_of(processor), int(processor.image_processor.resample)  # as pipelines.run
    stage = GenerateStage(model, None, TASKS, options, batch_size=batch_size, vae=find_vae(None, model), device="cpu")
    tables, seconds = [], 0.0
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        read = {C.IMAGE_ID: np.array([p.stem for p in chunk], dtype=object),
                C.SOURCE_URI: np.array([p.resolve().as_uri() for p in chunk], dtype=object),
                C.IMAGE_BYTES: np.array([p.read_bytes() for p in chunk], dtype=object),
                C.QUESTION: np.array([""] * len(chunk), dtype=object),
                C.DONE_TASKS: C.list_column([[]] * len(chunk))}
        decoded = decode_rows(read, size, resample)
        started = time.perf_counter()
        out = stage(decoded)
        seconds += time.perf_counter() - started
        tables.append(pa.Table.from_pydict({name: list(values) for name, values in out.items()}))
    return pa.concat_tables(tables), seconds


def image_review_auroc(rows: list[dict], ground_truth: dict) -> dict:
    """The Label Studio task score's AUROC for wrong images (lower score first)."""
    scores = TaskScores()
    for row in rows:
        for control, _, score in scored_controls(row):
            scores.add(control, score)
    image_ids = ImageIndex(ground_truth["images"])
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    truth = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        truth[annotation["image_id"]].append(annotation)
    by_image = defaultdict(list)
    for row in rows:
        by_image[row["source_uri"]].append(row)
    task_scores, wrong = [], []
    for uri, image_rows in by_image.items():
        image_id = image_ids(image_rows[0])
        regions = [region for row in image_rows for region in row_regions(row)]
        task_scores.append(scores.task_score(image_rows, regions))
        wrong.append(any(not ok for row in image_rows for _, ok in right_or_wrong(
            row["boxes"] or [], truth[image_id], names, "boxes", sizes[image_id])))
    wrong = np.array(wrong)
    # AUROC of "wrong" against the negated score: wrong images should score lower.
    return {"images": len(wrong), "wrong_images": int(wrong.sum()),
            "auroc": auroc(-np.array(task_scores), wrong)}


def study(images_dir: str, ground_truth_path: str, model: str, classes: tuple[str, ...], batch_size: int = 8) -> dict:
    ground_truth = json.loads(Path(ground_truth_path).read_text())
    images = sorted(p for p in Path(images_dir).iterdir() if p.suffix in (".png", ".jpg", ".jpeg"))
    options = PromptOptions(classes=classes)
    generated, seconds = generate_columns(images, model, options, batch_size)
    result = {"images": len(images), "model": model, "model_stage_seconds": round(seconds, 1), "right_iou": RIGHT_IOU}
    for name, rule in RULES.items():
        with rule():
            rows = to_label_table(generated, options, model, "study").to_pylist()
        report = evaluate_rows(rows, ground_truth)
        result[name] = {"score_calibration": report.get("score_calibration", {}),
                        "mAP_50": {key: report[key]["mAP_50"] for key in ("detect", "segment_boxes", "segment_masks")
                                   if key in report},
                        "label_studio_review": image_review_auroc(rows, ground_truth)}
    return result


def format_study(result: dict) -> str:
    lines = [f"{result['images']} images, model stage {result['model_stage_seconds']} s"]
    lines.append(f"{'rule':<8} {'kind':<14} {'objects':>7} {'wrong':>5} {'AUROC':>6} {'med right':>9} "
                 f"{'med wrong':>9} {'ECE':>6} {'mAP@.5':>7}")
    for name in RULES:
        for kind, figures in result[name]["score_calibration"].items():
            auc = "-" if figures.get("auroc") is None else f"{figures['auroc']:.3f}"
            med = ["-" if figures.get(k) is None else f"{figures[k]:.3f}" for k in ("median_score_right",
                                                                                  "median_score_wrong")]
            lines.append(f"{name:<8} {kind:<14} {figures['objects']:>7} {figures['wrong']:>5} {auc:>6} {med[0]:>9} "
                         f"{med[1]:>9} {figures.get('expected_calibration_error', 0):>6.3f} "
                         f"{result[name]['mAP_50'].get(kind, 0):>7.3f}")
        review = result[name]["label_studio_review"]
        lines.append(f"{name:<8} Label Studio task score: image AUROC {review['auroc']:.3f} "
                     f"({review['wrong_images']} wrong of {review['images']} images)")
    for name in RULES:
        for kind, figures in result[name]["score_calibration"].items():
            table = ", ".join(f"{b['bin'][0]:.1f}-{b['bin'][1]:.1f}: {b['objects']} @ {b['mean_score']:.2f} -> "
                              f"{b['fraction_right']:.2f}" for b in figures.get("reliability", []))
            lines.append(f"{name} {kind} reliability: {table}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="A folder of image files (jobs/make_shapes.py's images/).")
    parser.add_argument("--ground-truth", required=True, help="COCO ground truth of those images.")
    parser.add_argument("--model", default="tests/data/shapes-paligemma")
    parser.add_argument("--classes", default="circle,square,triangle")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", help="Write the figures as JSON here too.")
    args = parser.parse_args(argv)
    result = study(args.images, args.ground_truth, args.model, tuple(args.classes.split(",")), args.batch_size)
    print(format_study(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
