"""Score a dataset written by jobs/annotate.py against COCO-format ground truth.

Prints a table and writes the full report as JSON: COCO mAP@[.5:.95] and mAP@.5 with AP per
class for `detect` boxes and `segment` boxes and masks (pycocotools), caption exact match and word
accuracy, and rows per task and status. Rows join ground-truth images on their `image_id` where the
ground truth kept it (this project's exports), else on the file name their `source_uri` ends with (a
path in the ground truth, as labelling tools write it, is matched by its tail); ground truth with
boxes only scores boxes and says that masks were not scored.
"""

import argparse
import json
import sys
from pathlib import Path

import fsspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.review.evaluate import evaluate_rows, format_report, format_side_by_side, side_by_side  # noqa: E402
from pipelines.review.ground_truth import read_ground_truth  # noqa: E402
from pipelines.storage.output import read_annotations  # noqa: E402

COLUMNS = ["image_id", "source_uri", "task", "status", "boxes", "masks", "text"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="The annotation dataset (directory or URI).")
    parser.add_argument("--ground-truth", required=True,
                        help="COCO-format JSON (jobs/make_shapes.py, any tool's COCO export) or Label Studio's JSON "
                             "export of the reviewed tasks.")
    parser.add_argument("--ground-truth-tasks", default="", metavar="TASKS",
                        help="Comma-separated tasks the ground truth is for, e.g. detect: rows of other tasks are "
                             "not scored (default: every task it can score; a COCO file whose annotations name no "
                             "task scores detect and segment alike).")
    parser.add_argument("--output", help="Where to write the JSON report (default: print only).")
    parser.add_argument("--show", type=int, default=0, metavar="N",
                        help="Also print the predictions of the first N images next to their ground truth.")
    args = parser.parse_args(argv)

    with fsspec.open(args.ground_truth, "r") as f:
        loaded = json.load(f)
    rows = read_annotations(args.predictions, COLUMNS).to_pylist()
    try:
        ground_truth = read_ground_truth(loaded)
        tasks = tuple(task.strip() for task in args.ground_truth_tasks.split(",") if task.strip())
        report = evaluate_rows(rows, ground_truth, tasks)
        shown = side_by_side(rows, ground_truth, args.show) if args.show else []
    except ValueError as err:  # not ground truth, or two of its images that the rows cannot tell apart
        print(f"error: {err}", file=sys.stderr)
        return 2
    if shown:
        print(format_side_by_side(shown) + "\n")
    print(format_report(report))
    if args.output:
        with fsspec.open(args.output, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
