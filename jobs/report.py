"""Write a static HTML report of an annotation dataset: counts, score histograms, frequent labels
and a gallery of sampled images with their boxes, masks and texts drawn."""

import argparse
import json
import sys
from pathlib import Path

import fsspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.review.acceptance import acceptance  # noqa: E402
from pipelines.review.evaluate import ImageIndex  # noqa: E402
from pipelines.review.ground_truth import read_ground_truth  # noqa: E402
from pipelines.review.report import build_report  # noqa: E402
from pipelines.storage.output import read_annotations  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="The annotation dataset written by jobs/annotate.py (URI).")
    parser.add_argument("--output", required=True, help="Local directory for index.html and gallery/*.png.")
    parser.add_argument("--samples", type=int, default=12, help="Images in the gallery.")
    parser.add_argument("--ground-truth", help="A review of the dataset (Label Studio's JSON export, or COCO): "
                        "the report then shows what the review kept, adjusted, relabelled, deleted and added.")
    args = parser.parse_args(argv)
    try:
        accepted = None
        if args.ground_truth:
            with fsspec.open(args.ground_truth, "r") as f:
                truth = read_ground_truth(json.load(f))
            rows = read_annotations(args.input, ["image_id", "source_uri", "task", "boxes", "text"]).to_pylist()
            accepted = acceptance(rows, truth, ImageIndex(truth["images"]))
        summary = build_report(args.input, args.output, args.samples, acceptance=accepted)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report of {summary['rows']} rows, {summary['images_drawn']} images drawn -> {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
