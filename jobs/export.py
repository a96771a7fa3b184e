"""Export an annotation dataset for annotators: Label Studio tasks JSON or COCO JSON.

Streams the dataset in batches: memory does not grow with the number of rows.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.review.export import FORMATS, export  # noqa: E402
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap  # noqa: E402


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="The annotation dataset written by jobs/annotate.py (URI).")
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), help="Label Studio tasks or COCO.")
    parser.add_argument("--output", required=True, help="The JSON file to write (local path or URI).")
    parser.add_argument("--tasks", type=_names, default=(), help="Comma-separated tasks to export (default: all).")
    parser.add_argument("--status", type=_names, default=(),
                        help="Comma-separated row statuses to export, e.g. ok (default: all).")
    parser.add_argument("--min-score", type=float, default=None,
                        help="Drop boxes, masks and texts scoring below this (and those without a score).")
    parser.add_argument("--image-url-prefix", action="append", default=[], metavar="FROM=TO",
                        help="Map source_uri prefixes to image URLs, e.g. gs://bucket=https://host/path; repeatable.")
    parser.add_argument("--label-config", default=None, metavar="FILE",
                        help="With --format labelstudio: also write the matching Label Studio labelling config "
                             "(XML) to FILE; create the project with it.")
    parser.add_argument("--shard-size", type=int, default=None, metavar="N",
                        help="Write --output as a folder (local or bucket) of files of at most N Label Studio tasks "
                             "(for a source storage sync) or N COCO images (one labelling job each) instead of "
                             "one file.")
    parser.add_argument("--coco-layout", choices=["file", "datumaro"], default="file",
                        help="With --format coco: 'datumaro' makes --output a folder that datumaro (CVAT's format "
                             "engine) imports: annotations/instances_<subset>.json beside images/<subset>/, the "
                             "images copied; one subset per shard with --shard-size, else 'default'.")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Rows read at a time.")
    args = parser.parse_args(argv)
    try:
        urls = UrlMap.parse(args.image_url_prefix)
        row_filter = RowFilter(tasks=args.tasks, statuses=args.status, min_score=args.min_score)
        print(export(args.format, args.input, args.output, row_filter, urls, args.batch_size, args.label_config,
                     args.shard_size, args.coco_layout))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
