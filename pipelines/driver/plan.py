"""What a run would do, from the input listing alone: images, shards, requests, GPU-hours.

Reads only file listings and metadata (Parquet footers, tar headers) and the checkpoint's config: no
weights, no Ray.
"""

from __future__ import annotations

import math
import tarfile

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.storage.inputs import InputFiles
from pipelines.tasks.base import TaskSpec
from schemas.job import JobConfig

NO_THROUGHPUT = (
    "no GPU throughput has been measured for this pipeline yet; run it once on your GPUs and pass the summary's "
    "requests_per_gpu_s as --requests-per-gpu-s"
)


def _sample_keys(plan: InputFiles, path: str) -> int:
    """Samples in a WebDataset shard: member names up to the first dot of their base name, as the
    WebDataset reader groups them. Reads tar headers only (members are skipped by seeking)."""
    keys = set()
    with plan.filesystem.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r:") as tar:
        for member in tar:
            if member.isfile():
                folder, _, base = member.name.rpartition("/")
                keys.add(f"{folder}/{base.split('.', 1)[0]}")
    return len(keys)


def count_inputs(plan: InputFiles, question_column: str | None = None) -> tuple[int, int]:
    """(images, of which carry a per-image question) that the readers will produce from `plan`."""
    if plan.kind == "images":
        return len(plan.paths), 0
    if plan.kind == "webdataset":
        return sum(_sample_keys(plan, path) for path in plan.paths), 0
    images = questions = 0
    for path in plan.paths:
        with plan.filesystem.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            images += parquet.metadata.num_rows
            if question_column:
                column = parquet.read(columns=[question_column]).column(question_column)
                questions += pc.sum(pc.greater(pc.utf8_length(column.fill_null("")), 0)).as_py() or 0
    return images, questions


def model_memory(cfg: JobConfig) -> dict:
    """The model's weights per model actor, computed from the checkpoint's config for --dtype (auto: as on
    a GPU) and --quantization; the KV cache and activations come on top (docs/operations-and-clusters.md)."""
    # Imported here: listing and counting inputs must not import torch (test_import_boundaries).
    import torch  # noqa: PLC0415

    from pipelines.model.checkpoint import ModelLoadError  # noqa: PLC0415
    from pipelines.model.load import load_config, model_dtype  # noqa: PLC0415
    from pipelines.model.quantization import unquantized_modules, weight_bytes  # noqa: PLC0415

    device = "cpu" if cfg.device == "cpu" else "cuda"
    dtype = model_dtype(cfg.dtype, torch.device(device))
    try:
        config = load_config(cfg.model, cfg.revision)
        parts = weight_bytes(config, cfg.quantization, dtype, unquantized_modules(config, cfg.quantization, device))
    except ModelLoadError as err:
        return {"model_weights_mib_per_actor": None, "model_weights_note": str(err)}
    return {"model_weights_mib_per_actor": round(parts["total"] / 2**20, 3),
            "model_weights_dtype": str(dtype).removeprefix("torch."), "quantization": cfg.quantization}


def planned_batch_size(cfg: JobConfig) -> int | None:
    """The batch size the run would use, on a GPU unless --device cpu (as the weights above); None when it
    depends on the checkpoint's input size and that cannot be read."""
    from pipelines.model.checkpoint import ModelLoadError, check_model_source, image_settings  # noqa: PLC0415

    device = "cpu" if cfg.device == "cpu" else "cuda"
    if cfg.batch_size or device == "cpu":
        return cfg.batch_size_for(device, image_size=224)  # the size does not matter here
    try:
        check_model_source(cfg.model, cfg.revision)  # a Hub id: from the cache, or one quick request
        return cfg.batch_size_for(device, image_settings(cfg.model, cfg.revision).size)
    except ModelLoadError:
        return None


def plan_summary(cfg: JobConfig, plan: InputFiles, tasks: list[TaskSpec]) -> dict:
    """The plan's figures: inputs, requests per task (one per image and prompt) and GPU-hours."""
    options = cfg.prompt_options()
    images, with_question = count_inputs(plan, cfg.question_column)
    requests = {}
    for task in tasks:
        # A task that takes the image's own question (answer) has more prompts for images that carry one.
        base = len(task.build_prompts(options, None))
        extra = len(task.build_prompts(options, "a question")) - base
        requests[task.name] = images * base + with_question * extra
    total = sum(requests.values())
    rate = cfg.requests_per_gpu_s
    batch_size = planned_batch_size(cfg)
    return {
        "input_kind": plan.kind,
        "input_files": len(plan.paths),
        "ignored_files": plan.ignored,
        "outside_window_files": plan.outside_window,
        "images": images,
        "requests_per_task": requests,
        "requests": total,
        "max_new_tokens_per_task": {task.name: task.budget(options) for task in tasks},
        "batch_size": batch_size,
        "generate_calls_at_least": sum(math.ceil(n / batch_size) for n in requests.values()) if batch_size else None,
        "requests_per_gpu_s": rate,
        "estimated_gpu_hours": round(total / rate / 3600, 3) if rate else None,
        "estimate_note": None if rate else NO_THROUGHPUT,
        **model_memory(cfg),
    }
