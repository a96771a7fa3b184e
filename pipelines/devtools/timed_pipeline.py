"""The job's own stages, timed: Ray Data read -> decode -> generate -> label -> write, as
`pipelines.run.annotate` composes them, with the benchmarks' stage options, in this process."""

from __future__ import annotations

import dataclasses
import time

from pipelines.devtools.measure import WorkerPeaks, peak_rss_mib, tree_cpu_seconds
from schemas.job import JobConfig


def ray_operators(ds) -> list:
    """Ray Data's stats of every operator that ran, the write included."""
    todo, ops = [ds.get_stats_summary()], []
    while todo:
        current = todo.pop()
        todo.extend(current.parents)
        ops.extend(current.operators_stats)
    return ops


def stage_breakdown(ds) -> list[dict]:
    """Per Ray Data operator: its span, and the summed wall and CPU time of its tasks."""
    return sorted(({
        "operator": op.operator_name,
        "span_s": round(op.time_total_s, 3),
        "task_wall_s": round(op.wall_time.sum, 3) if op.wall_time else None,
        "task_cpu_s": round(op.cpu_time.sum, 3) if op.cpu_time else None,
        "output_rows": int(op.output_num_rows.sum) if op.output_num_rows else None,
    } for op in ray_operators(ds)), key=lambda stage: stage["operator"])


def run_pipeline(model_dir: str, input_uri: str, output_uri: str, tasks: list[str], classes: list[str],
                 batch_size: int, num_actors: int | None, share_vision: bool, fixed_length: bool = True,
                 job_fields: dict | None = None, torch_threads: int | None = None,
                 without_model: bool = False) -> dict:
    """The job's stages, as `pipelines.run.annotate` composes them, with benchmark stage options;
    `job_fields` are further JobConfig fields (e.g. the Parquet reader's uri_column); `without_model`:
    `StageOptions.benchmark_without_model`. `task_cpu_seconds` is the CPU time of every stage's tasks as
    Ray Data counts it; `cpu_seconds` that of the driver and its descendant processes (Ray's own included,
    but not workers Ray starts outside that tree)."""
    import ray

    from pipelines.build import build_dataset
    from pipelines.model.checkpoint import find_vae
    from pipelines.model.load import image_size_of, load_processor
    from pipelines.placement import place_model
    from pipelines.stages.generate import StageOptions
    from pipelines.stages.write import write_annotations
    from pipelines.storage.inputs import resolve_inputs
    from pipelines.storage.output import prepare_target, summarize
    from pipelines.tasks.registry import get_task

    cfg = JobConfig(input=input_uri, output=output_uri, tasks=tasks, classes=classes, model=model_dir,
                    batch_size=batch_size, num_actors=num_actors, overwrite=True, **(job_fields or {}))
    # A local Ray of its own, unless this process is connected to one already (the tests run it on theirs).
    own_ray = not ray.is_initialized()
    if own_ray:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        inputs = resolve_inputs(cfg.input, cfg.input_format)
        # the mask decoder beside the checkpoint, for tasks that decode masks (as the job finds it)
        vae = find_vae(None, cfg.model) if any(get_task(task).decodes_masks for task in cfg.tasks) else None
        processor = load_processor(cfg.model)
        target = prepare_target(cfg.output, cfg.overwrite)
        placement = place_model(cfg, image_size_of(processor))
        if torch_threads:
            placement = dataclasses.replace(placement, torch_threads=torch_threads)
        options = StageOptions(share_vision=share_vision, fixed_length=fixed_length,
                               benchmark_without_model=without_model)
        with WorkerPeaks() as workers:
            cpu_before = tree_cpu_seconds()
            started = time.perf_counter()
            ds = build_dataset(cfg, inputs, image_size_of(processor), int(processor.image_processor.resample),
                               placement, "benchmark", vae, options)
            write_annotations(ds, target)
            finished = time.perf_counter()
            cpu_seconds = tree_cpu_seconds() - cpu_before
        # perf_counter is the machine's monotonic clock, shared by the local workers' task stats.
        model_start = min(op.earliest_start_time for op in ray_operators(ds) if "GenerateStage" in op.operator_name)
        counts = summarize(target.filesystem, target.path)
        stages = stage_breakdown(ds)
        return {
            "seconds": finished - started,
            "cpu_seconds": round(cpu_seconds, 3),
            "steady_seconds": finished - model_start,
            "rows": counts["rows"],
            "images": counts["images"],
            "model_actors": placement.max_actors,
            "torch_threads_per_actor": placement.torch_threads,
            "stages": stages,
            "task_cpu_seconds": round(sum(stage["task_cpu_s"] or 0.0 for stage in stages), 3),
            "ray_data_stats": ds.stats(),
            "driver_peak_rss_mib": peak_rss_mib(),
            "worker_peak_rss_mib": workers.by_name(),
        }
    finally:
        if own_ray:
            ray.shutdown()
