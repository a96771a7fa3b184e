"""Measure labelling throughput: the naive model-card loop, the model-only ceiling and the Ray pipeline.

Writes the results as JSON to --output (and a plot of images/s against batch size beside it, .png)
and prints a table. `--memory-check` instead compares the driver's peak memory for 1k and 10k images,
`--budget-check` measures what long token budgets cost, `--feeding-check` what feeding a GPU costs in CPU,
`--resume-check` what resuming costs at 10k and 1M finished rows, `--engine transformers,vllm` the model
stage's engines side by side.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipelines.devtools.benchmark import (  # noqa: E402
    run_benchmark,
    run_budget_check,
    run_feeding_check,
    run_memory_check,
    run_resume_check,
    table,
    write_results,
)
from pipelines.devtools.engine_bench import engine_table, run_engine_benchmark  # noqa: E402
from pipelines.driver.cli import config_from_args, one_line, parser_for  # noqa: E402
from schemas.benchmark import BenchmarkConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parser_for(BenchmarkConfig, __doc__.splitlines()[0]).parse_args(argv)
    try:
        cfg = config_from_args(BenchmarkConfig, args)
    except ValueError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    if cfg.engine:
        results = run_engine_benchmark(cfg)
        path, _ = write_results(results, cfg.output)
        print(engine_table(results))
        print(f"results -> {path}")
        return 0
    check = (run_memory_check if cfg.memory_check else run_budget_check if cfg.budget_check
             else run_feeding_check if cfg.feeding_check else run_resume_check if cfg.resume_check else None)
    if check is not None:
        results = check(cfg)
        write_results(results, cfg.output)
        print(json.dumps(results, indent=2, sort_keys=True))
        return 0
    results = run_benchmark(cfg)
    path, png = write_results(results, cfg.output)
    print(table(results))
    print(f"results -> {path}, plot -> {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
