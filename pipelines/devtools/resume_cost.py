"""What resuming costs as the earlier attempt's output grows: peak memory and time of the resume check.

An earlier attempt is written synthetically (no model): Parquet input shards of `SHARD_ROWS` rows, all
but the last finished (every row of the caption task written), the last one half written, as a run
killed mid-way leaves it. Then, each in a fresh interpreter so each has its own peak RSS:
- driver: `begin_run` + `completion.plan_resume`, what the driver does before the pipeline starts;
- worker: what a resume step holds, the shared finished work unpickled, and one batch filtered with it;
- the same two with every written id collected (`collect_finished` of all files), the way resume worked
  before it went by input file, for comparison.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.devtools.measure import in_fresh_process, peak_rss_mib

SHARD_ROWS = 10_000
TASK = "caption"


def _job_flags(inputs: Path, output: Path) -> dict:
    return {"input": str(inputs), "output": str(output), "tasks": TASK, "model": "unused", "input_format": "parquet"}


def write_earlier_attempt(root: Path, finished_rows: int) -> tuple[Path, Path]:
    """Input shards and the output an attempt killed in the last shard leaves: `finished_rows` rows written
    for the finished shards, half of the last shard's. Returns (input dir, output dir)."""
    from pipelines.run import job_identity
    from pipelines.storage.output import JOB_FILE
    from schemas import LABEL_ROW_SCHEMA
    from schemas.job import JobConfig

    inputs, output = root / "in", root / "out"
    (output / f"task={TASK}").mkdir(parents=True)
    inputs.mkdir(parents=True)
    shards = finished_rows // SHARD_ROWS + 1
    for shard in range(shards):
        path = inputs / f"part-{shard:05d}.parquet"
        pq.write_table(pa.table({"image": pa.array([b"x"] * SHARD_ROWS, pa.binary())}), path)
        written = SHARD_ROWS if shard < shards - 1 else SHARD_ROWS // 2
        uris = [f"file://{path}#row={row:016x}" for row in range(written)]
        columns = {"image_id": [f"{shard:05d}-{row:06d}" for row in range(written)], "source_uri": uris,
                   "task": [TASK] * written, "status": ["ok"] * written}
        table = pa.table({field.name: columns.get(field.name, pa.nulls(written, field.type))
                          for field in LABEL_ROW_SCHEMA if field.name != "task"})
        pq.write_table(table, output / f"task={TASK}" / f"part-{shard:05d}.parquet")
    cfg = JobConfig.model_validate(_job_flags(inputs, output))
    (output / JOB_FILE).write_text(json.dumps({**job_identity(cfg), "run_id": "earlier"}))
    return inputs, output


def driver_side(inputs: str, output: str, by_file: bool) -> dict:
    """The driver's resume check, timed; the finished work it would share, pickled, for `worker_side`."""
    from pipelines.run import job_identity
    from pipelines.storage.completion import collect_finished, plan_resume
    from pipelines.storage.inputs import resolve_job_inputs
    from pipelines.storage.output import begin_run, prepare_target
    from pipelines.tasks.registry import check_tasks
    from schemas.job import JobConfig

    cfg = JobConfig.model_validate(_job_flags(Path(inputs), Path(output)))
    job_inputs = resolve_job_inputs(cfg)
    started = time.perf_counter()
    target = prepare_target(cfg.output, False, None, job_identity(cfg))
    state = begin_run(target, job_identity(cfg), "resume", explicit_run_id=False)
    if by_file:
        resume = plan_resume(target.filesystem, state.written, job_inputs, check_tasks(cfg.tasks, cfg.prompt_options()),
                             cfg.prompt_options(), cfg.uri_column)
        finished, skipped_files = resume.finished, len(resume.finished_paths)
    else:
        finished, skipped_files = collect_finished(target.filesystem, state.written, job_inputs.kind, None), 0
    seconds = time.perf_counter() - started
    shared = Path(output).parent / f"shared-{'by-file' if by_file else 'all-ids'}.pickle"
    shared.write_bytes(pickle.dumps(finished))
    return {"seconds": round(seconds, 3), "rows_before": state.rows_before, "ids_shared": len(finished),
            "input_files_skipped": skipped_files, "peak_rss_mib": round(peak_rss_mib(), 1), "shared": str(shared)}


def worker_side(shared: str) -> dict:
    """A resume step's memory: the shared finished work, and one batch of 64 rows filtered with it."""
    from pipelines.stages.resume import drop_finished
    from schemas import columns as C

    finished = pickle.loads(Path(shared).read_bytes())
    batch = {C.IMAGE_ID: np.array([f"99999-{i:06d}" for i in range(64)], dtype=object)}
    kept = len(drop_finished(batch, finished, [TASK])[C.IMAGE_ID])
    return {"rows_kept": kept, "peak_rss_mib": round(peak_rss_mib(), 1)}


def run_resume_cost(sizes: tuple[int, ...] = (10_000, 1_000_000), workdir: Path | None = None) -> dict:
    """Driver and worker peak RSS and the check's time at each size, by input file and with every id."""
    root = Path(workdir or tempfile.mkdtemp(prefix="paligemma-resume-"))
    results: dict = {"shard_rows": SHARD_ROWS, "sizes": {}}
    try:
        for size in sizes:
            inputs, output = write_earlier_attempt(root / str(size), size)
            runs = {}
            for by_file in (True, False):
                driver = in_fresh_process(driver_side, str(inputs), str(output), by_file)
                worker = in_fresh_process(worker_side, driver.pop("shared"))
                runs["by_input_file" if by_file else "every_id"] = {"driver": driver, "worker": worker}
            results["sizes"][size] = runs
    finally:
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)
    small, large = (results["sizes"][size]["by_input_file"] for size in (min(sizes), max(sizes)))
    results["ratio_largest_vs_smallest"] = {
        side: round(large[side]["peak_rss_mib"] / small[side]["peak_rss_mib"], 3) for side in ("driver", "worker")}
    results["machine"] = {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    return results
