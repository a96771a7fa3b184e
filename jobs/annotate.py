"""Annotate images with PaliGemma on Ray and write a Parquet dataset of labels.

Runs on a laptop (starts a local Ray) or unchanged under `ray job submit -- python jobs/annotate.py ...`.
Exit codes: 0 done (or planned), 2 bad flags or inputs (nothing started), 1 the run failed. The JSON
summary is printed, and written to --summary-uri, in every case.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.driver.cli import parser_for  # noqa: E402
from pipelines.run import describe, run_job  # noqa: E402
from schemas.job import JobConfig  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    return parser_for(JobConfig, __doc__.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = run_job({name: value for name, value in vars(args).items() if value is not None})
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    print(describe(summary), file=sys.stdout if summary["exit_code"] == 0 else sys.stderr)
    return summary["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
