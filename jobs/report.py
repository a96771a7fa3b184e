"""Write a static HTML report of an annotation dataset: counts, score histograms, frequent labels
and a gallery of sampled images with their boxes, masks and texts drawn."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.review.report import build_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="The annotation dataset written by jobs/annotate.py (URI).")
    parser.add_argument("--output", required=True, help="Local directory for index.html and gallery/*.png.")
    parser.add_argument("--samples", type=int, default=12, help="Images in the gallery.")
    args = parser.parse_args(argv)
    try:
        summary = build_report(args.input, args.output, args.samples)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report of {summary['rows']} rows, {summary['images_drawn']} images drawn -> {summary['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
