"""Compose the stages into one Ray Dataset plan: read -> decode -> generate -> parse/validate."""

from __future__ import annotations

from dataclasses import dataclass, replace

import ray.data

from pipelines.decode import decode_batch
from pipelines.infer import GenerateStage, StageOptions
from pipelines.read import InputPlan, read_images
from pipelines.resume import share_finished, skip_finished
from pipelines.validate import to_label_table
from schemas.job import JobConfig

DECODE_BATCH_SIZE = 16
ACTOR_TASK_RETRIES = 3


@dataclass(frozen=True)
class ModelPlacement:
    """How the model stage is spread over the cluster."""

    num_actors: int
    gpus_per_actor: int  # 1 on a GPU cluster, 0 on CPU
    cpus_per_actor: float
    torch_threads: int | None = None  # CPU actors: intra-op threads (Ray would leave torch one)


def build_dataset(
    cfg: JobConfig,
    plan: InputPlan,
    image_size: int,
    resample: int,
    placement: ModelPlacement,
    run_id: str,
    vae: str | None = None,
    stage_options: StageOptions = StageOptions(),
    finished: dict[str, frozenset[str]] | None = None,
) -> ray.data.Dataset:
    """The lazy dataset of LabelRows; nothing runs until it is written. `vae` is the mask
    decoder file, needed when a task decodes masks; `finished` the work an earlier attempt wrote
    (image_id -> tasks), which is not done again."""
    if placement.torch_threads:
        stage_options = replace(stage_options, torch_threads=placement.torch_threads)
    ds = read_images(plan, cfg)
    # Resuming: finished images are dropped here, before they cost a decode.
    ds = ds.map_batches(skip_finished, fn_kwargs={"shared": share_finished(finished or {}), "tasks": cfg.tasks},
                        batch_format="numpy")
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"size": image_size, "resample": resample, "max_pixels": cfg.max_image_pixels},
        batch_size=DECODE_BATCH_SIZE,
    )
    ds = ds.map_batches(
        GenerateStage,
        fn_constructor_kwargs={
            "model": cfg.model,
            "revision": cfg.revision,
            "tasks": cfg.tasks,
            "options": cfg.prompt_options(),
            "batch_size": cfg.batch_size,
            "vae": vae,
            "stage_options": stage_options,
        },
        compute=ray.data.ActorPoolStrategy(size=placement.num_actors),
        batch_size=cfg.batch_size,
        num_gpus=placement.gpus_per_actor,
        num_cpus=placement.cpus_per_actor,
        # An actor whose process dies (a preempted node, a killed worker) is started again, and the
        # batches it held are retried on the pool; a batch that kills its actor every time fails the run
        # after ACTOR_TASK_RETRIES tries instead of looping (the rerun then resumes).
        max_restarts=-1,
        max_task_retries=ACTOR_TASK_RETRIES,
    )
    return ds.map_batches(
        to_label_table,
        fn_kwargs={"options": cfg.prompt_options(), "model_name": cfg.model_name, "run_id": run_id},
        batch_format="pyarrow",
    )
