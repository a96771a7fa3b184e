"""Annotate images with PaliGemma on Ray and write a Parquet dataset of labels.

Runs on a laptop (starts a local Ray) or unchanged under `ray job submit -- python jobs/annotate.py ...`.
Exit codes: 0 done, 2 bad flags or inputs (nothing started), 1 the run failed.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.cli import config_from_args, one_line, parser_for  # noqa: E402
from pipelines.mask_decoder import VaeLoadError  # noqa: E402
from pipelines.model import ModelLoadError  # noqa: E402
from pipelines.run import annotate  # noqa: E402
from schemas.job import JobConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parser_for(JobConfig, __doc__.splitlines()[0]).parse_args(argv)
    try:
        cfg = config_from_args(JobConfig, args)
        summary = annotate(cfg)
    except (ValueError, ModelLoadError, VaeLoadError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    counts = ", ".join(
        f"{task}: " + " ".join(f"{status}={n}" for status, n in sorted(by_status.items()))
        for task, by_status in sorted(summary["rows_per_task_and_status"].items())
    )
    print(f"annotated {summary['images']} images into {summary['rows']} rows in {summary['wall_s']:.1f} s "
          f"({summary['images_per_s']} images/s) -> {cfg.output} [{counts}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
