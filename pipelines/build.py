"""Compose the stages into one lazy Ray Dataset: read -> resume -> decode -> generate -> label, which
`stages/write.py` then streams to Parquet. The chain's column contracts are checked here, before any
data moves."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import ray.data

from pipelines.placement import ModelPlacement
from pipelines.stages import decode, generate, label, read, resume, write
from pipelines.stages.contract import StageContract, check_chain
from pipelines.stages.generate import GenerateStage, StageOptions
from pipelines.stages.read import read_images
from pipelines.storage.inputs import InputFiles
from schemas.job import JobConfig

DECODE_BATCH_SIZE = 16
ACTOR_TASK_RETRIES = 20


@dataclass(frozen=True)
class Stage:
    """One `map_batches` step of the chain: its contract, and what Ray Data is given to run it."""

    contract: StageContract
    fn: Any  # a function, or a class for an actor pool
    options: dict[str, Any]


def actor_pool(placement: ModelPlacement) -> ray.data.ActorPoolStrategy:
    """A fixed pool, or one Ray Data grows while batches queue (each new GPU actor is a request the
    cluster's autoscaler sees) and shrinks when actors idle."""
    if placement.min_actors == placement.max_actors:
        return ray.data.ActorPoolStrategy(size=placement.min_actors)
    return ray.data.ActorPoolStrategy(min_size=placement.min_actors, max_size=placement.max_actors)


def stages_for(cfg: JobConfig, image_size: int, resample: int, placement: ModelPlacement, run_id: str,
               vae: str | None, stage_options: StageOptions, shared_finished: list,
               actor_log: Any = None) -> list[Stage]:
    """The job's steps after the read, in data-flow order; nothing runs. `shared_finished` is the
    earlier attempt's finished work as `resume.share_finished` put it in Ray's object store;
    `actor_log` a `placement.ModelActorLog` the model actors report where they run to."""
    if placement.torch_threads:
        stage_options = replace(stage_options, torch_threads=placement.torch_threads)
    return [
        # Resuming: finished images are dropped here, before they cost a decode.
        Stage(resume.CONTRACT, resume.skip_finished, {
            "fn_kwargs": {"shared": shared_finished, "tasks": cfg.tasks}, "batch_format": "numpy"}),
        Stage(decode.CONTRACT, decode.decode_batch, {
            "fn_kwargs": {"size": image_size, "resample": resample, "max_pixels": cfg.max_image_pixels,
                          "jpeg_draft": cfg.jpeg_draft},
            "batch_size": DECODE_BATCH_SIZE}),
        Stage(generate.CONTRACT, GenerateStage, {
            "fn_constructor_kwargs": {
                "model": cfg.model, "revision": cfg.revision, "tasks": cfg.tasks, "options": cfg.prompt_options(),
                "batch_size": placement.batch_size, "vae": vae, "stage_options": stage_options, "dtype": cfg.dtype,
                "device": placement.device, "actor_log": actor_log, "engine": cfg.engine,
                "vllm_settings": cfg.vllm_settings(), "quantization": cfg.quantization},
            "compute": actor_pool(placement),
            "batch_size": placement.batch_size,
            "num_gpus": placement.gpus_per_actor,
            "num_cpus": placement.cpus_per_actor,
            # An actor whose process dies (a preempted node, a killed worker) is started again, and the
            # batches it held are retried; a batch that kills its actor every time fails the run after
            # ACTOR_TASK_RETRIES tries instead of looping (the rerun then resumes). Each try while the actor
            # is still being restarted elsewhere fails at once (ActorUnavailableError) and counts: with 3,
            # one lost GPU node failed the run (tests/integration/test_multinode.py); 20 rode through it
            # and through a storm of a node lost every 10-20 s.
            "max_restarts": -1,
            "max_task_retries": ACTOR_TASK_RETRIES}),
        Stage(label.CONTRACT, label.to_label_table, {
            "fn_kwargs": {"options": cfg.prompt_options(), "model_name": cfg.model_name, "run_id": run_id},
            "batch_format": "pyarrow"}),
    ]


def compose(source: ray.data.Dataset, stages: list[Stage]) -> ray.data.Dataset:
    """`source` (a reader's output) through `stages`, once their chain of contracts, ending in the
    write, is known to hold: a stage that reads a column nothing before it writes raises
    StageContractError here, naming both."""
    check_chain(read.OUTPUT_COLUMNS, [stage.contract for stage in stages] + [write.CONTRACT])
    ds = source
    for stage in stages:
        ds = ds.map_batches(stage.fn, **stage.options)
    return ds


def build_dataset(
    cfg: JobConfig,
    inputs: InputFiles,
    image_size: int,
    resample: int,
    placement: ModelPlacement,
    run_id: str,
    vae: str | None = None,
    stage_options: StageOptions = StageOptions(),
    finished: dict[str, frozenset[str]] | None = None,
    actor_log: Any = None,
) -> ray.data.Dataset:
    """The lazy dataset of LabelRows; nothing runs until it is written. `vae` is the mask
    decoder file, needed when a task decodes masks; `finished` the work an earlier attempt wrote
    (image_id -> tasks), which is not done again."""
    stages = stages_for(cfg, image_size, resample, placement, run_id, vae, stage_options,
                        resume.share_finished(finished or {}), actor_log)
    return compose(read_images(inputs, cfg), stages)
