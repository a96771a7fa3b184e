"""Run one annotation job: check everything cheap first, then start Ray, run, and summarise."""

from __future__ import annotations

import datetime
import time

import ray

from pipelines.build import ModelPlacement, build_dataset
from pipelines.mask_decoder import VaeLoadError, find_vae, load_mask_decoder, missing_vae_message
from pipelines.model import image_size_of, load_processor
from pipelines.read import check_parquet_columns, resolve_inputs
from pipelines.tasks.registry import check_tasks
from pipelines.write import prepare_output, summarize, write_annotations, write_summary
from schemas.job import JobConfig


def default_run_id() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def place_model(num_actors: int | None) -> ModelPlacement:
    """One actor per GPU when the cluster has GPUs, else `num_actors` (default 1) CPU actors."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return ModelPlacement(num_actors=num_actors or gpus, gpus_per_actor=1, cpus_per_actor=1)
    # Ray starts a 1-CPU worker with one torch thread; the model is the bulk of the work, so a CPU
    # actor gets the node's cores (measured in jobs/benchmark.py; read and decode still fit).
    actors = num_actors or 1
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // actors)
    return ModelPlacement(num_actors=actors, gpus_per_actor=0, cpus_per_actor=1, torch_threads=threads)


def check_vae(cfg: JobConfig) -> str:
    """The mask decoder file for this job, loaded once here so a bad one fails before Ray starts."""
    vae = find_vae(cfg.vae, cfg.model)
    if vae is None:
        raise VaeLoadError(missing_vae_message(cfg.model))
    load_mask_decoder(vae)
    return vae


def annotate(cfg: JobConfig) -> dict:
    """Annotate `cfg.input` into `cfg.output` and return the run summary.

    Raises ValueError subclasses (bad options, missing input, existing output), ModelLoadError
    and VaeLoadError before Ray starts, so a bad command fails fast and cheaply.
    """
    tasks = check_tasks(cfg.tasks, cfg.prompt_options())
    vae = check_vae(cfg) if any(task.decodes_masks for task in tasks) else None
    plan = resolve_inputs(cfg.input, cfg.input_format)
    check_parquet_columns(plan, cfg)
    processor = load_processor(cfg.model, cfg.revision)
    image_size, resample = image_size_of(processor), int(processor.image_processor.resample)
    filesystem, output_path = prepare_output(cfg.output, cfg.overwrite)
    run_id = cfg.run_id or default_run_id()

    if not ray.is_initialized():
        ray.init(address=cfg.address)  # None: RAY_ADDRESS (e.g. under `ray job submit`) or a new local Ray
    placement = place_model(cfg.num_actors)
    started = time.perf_counter()
    ds = build_dataset(cfg, plan, image_size, resample, placement, run_id, vae)
    write_annotations(ds, filesystem, output_path)
    wall_s = time.perf_counter() - started

    summary = {
        "run_id": run_id,
        "input": cfg.input,
        "output": cfg.output,
        "model": cfg.model_name,
        "vae": vae,
        "tasks": cfg.tasks,
        "input_kind": plan.kind,
        "input_files": len(plan.paths),
        "ignored_files": plan.ignored,
        "model_actors": placement.num_actors,
        "gpus_per_actor": placement.gpus_per_actor,
        "wall_s": round(wall_s, 3),
        **summarize(filesystem, output_path),
    }
    summary["images_per_s"] = round(summary["images"] / wall_s, 3) if wall_s > 0 else None
    summary["summary_uri"] = write_summary(summary, filesystem, output_path)
    return summary
