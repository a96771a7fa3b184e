"""Write annotators' final labels as an annotation dataset in the project's row schema, beside the predictions.

One reviewed row per predicted row of every reviewed image (same image_id, source_uri, task and prompt), with
the ground truth's boxes, masks and captions and `model` naming the reviewer, so predictions and reviews join
in DuckDB and the reviewed set can train or evaluate the next model.
"""

import argparse
import json
import sys
from pathlib import Path

import fsspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.review.evaluate import ImageIndex  # noqa: E402
from pipelines.review.ground_truth import read_ground_truth  # noqa: E402
from pipelines.review.reviewed import reviewed_rows, write_rows  # noqa: E402
from pipelines.storage.output import read_annotations  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, help="The annotation dataset the review started from.")
    parser.add_argument("--ground-truth", required=True,
                        help="The review: Label Studio's JSON export, or COCO from any tool.")
    parser.add_argument("--output", required=True, help="Where to write the reviewed dataset (new directory or URI).")
    parser.add_argument("--reviewer", default="review", help="What the rows' `model` column says, e.g. "
                        "label-studio:project-7 (default: review).")
    parser.add_argument("--run-id", default="review", help="The rows' run_id (default: review).")
    args = parser.parse_args(argv)
    filesystem, path = fsspec.core.url_to_fs(args.output)
    if filesystem.exists(path) and filesystem.ls(path):
        print(f"error: {args.output} exists and is not empty; pick a new output", file=sys.stderr)
        return 2
    with fsspec.open(args.ground_truth, "r") as f:
        loaded = json.load(f)
    try:
        ground_truth = read_ground_truth(loaded)
        rows = read_annotations(args.predictions).to_pylist()
        reviewed = reviewed_rows(rows, ground_truth, ImageIndex(ground_truth["images"]), args.reviewer, args.run_id)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_rows(reviewed, args.output, {"rows": len(reviewed), "reviewer": args.reviewer})
    images = len({row.image_id for row in reviewed})
    print(f"wrote {len(reviewed)} reviewed rows for {images} images to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
