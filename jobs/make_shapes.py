"""Write a synthetic labelled dataset of coloured shapes (images + COCO ground_truth.json)."""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.devtools.shapes import FORMATS, SIZE_RANGE, write_shapes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="Number of images.")
    parser.add_argument("--seed", type=int, default=0, help="Seed; the same seed and count give the same bytes.")
    parser.add_argument("--output", required=True, help="Directory or fsspec URI (gs://, s3://) to write to.")
    parser.add_argument("--format", choices=FORMATS, default="images", help="Image layout (default: images).")
    parser.add_argument("--shard-size", type=int, default=100, help="Samples per .tar/.parquet (default: 100).")
    parser.add_argument("--min-size", type=int, default=SIZE_RANGE[0],
                        help=f"Smallest image side in pixels (default: {SIZE_RANGE[0]}).")
    parser.add_argument("--max-size", type=int, default=SIZE_RANGE[1],
                        help=f"Largest image side in pixels (default: {SIZE_RANGE[1]}).")
    parser.add_argument("--noise", type=int, default=0, help="Background noise, +- levels per pixel (default: 0).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing, non-empty output.")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        summary = write_shapes(args.output, args.count, args.seed, args.format, args.shard_size,
                               (args.min_size, args.max_size), args.noise, args.overwrite)
    except ValueError as err:  # bad values, or an existing output without --overwrite
        parser.error(str(err))
    print(f"wrote {summary['images']} images with {summary['objects']} objects as {summary['format']} "
          f"({summary['files']} files + ground_truth.json) to {summary['output']} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
