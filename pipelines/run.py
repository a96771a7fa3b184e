"""Run one annotation job: check everything cheap first, then start Ray, run, and summarise."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import time
import traceback
from dataclasses import dataclass

import ray
from pydantic import ValidationError

from pipelines.build import build_dataset
from pipelines.driver.cli import one_line
from pipelines.driver.plan import plan_summary
from pipelines.model.checkpoint import (
    ModelLoadError,
    VaeLoadError,
    check_model_source,
    check_quantization,
    check_tokenizer,
    check_vllm_checkpoint,
    find_vae,
    image_settings,
    missing_vae_message,
    read_config,
)
from pipelines.placement import GpuWait, place_model, placement_summary, start_actor_log
from pipelines.stages.write import write_annotations
from pipelines.storage.completion import plan_resume
from pipelines.storage.inputs import InputFiles, check_parquet_columns, resolve_job_inputs
from pipelines.storage.output import (
    SUMMARY_FILE,
    OutputTarget,
    WorsePartitionError,
    begin_run,
    check_replacement,
    commit_partition,
    prepare_target,
    summarize,
    write_json,
    write_summary,
)
from pipelines.storage.redact import redact, redact_text
from pipelines.tasks.base import TaskSpec
from pipelines.tasks.registry import check_tasks
from schemas.job import JobConfig

# Raised by the checks before Ray starts: the command is refused (exit 2) and nothing was done.
REFUSALS = (ValueError, ModelLoadError, VaeLoadError)
EXIT_CODES = {"succeeded": 0, "planned": 0, "failed": 1, "refused": 2}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def default_run_id() -> str:
    return _now().strftime("%Y%m%dT%H%M%S%fZ")


def check_vae(cfg: JobConfig) -> str:
    """The mask decoder file for this job, loaded once here so a bad one fails before Ray starts."""
    # The one check of the driver's that needs torch (the decoder's layout is its torch module's): jobs
    # without a mask task never import it.
    from pipelines.model.mask_decoder import load_mask_decoder  # noqa: PLC0415

    vae = find_vae(cfg.vae, cfg.model)
    if vae is None:
        raise VaeLoadError(missing_vae_message(cfg.model))
    load_mask_decoder(vae)
    return vae


@dataclass(frozen=True)
class CheckedJob:
    """Everything the checks found out, for the run itself."""

    run_id: str
    tasks: list[TaskSpec]
    inputs: InputFiles
    vae: str | None
    image_size: int
    resample: int
    target: OutputTarget


def job_identity(cfg: JobConfig) -> dict:
    """What `_job.json` records and a rerun is compared on: `cfg.identity()` without the credentials of
    its URIs (so it may be written next to the rows, and a rotated URL signature still resumes)."""
    return redact(cfg.identity())


def check_job(cfg: JobConfig) -> CheckedJob:
    """The cheap checks, before Ray starts: tasks, mask decoder, inputs, the checkpoint's small files, output.

    Raises REFUSALS. Only `--overwrite` changes anything here (it removes the old dataset).
    """
    tasks = check_tasks(cfg.tasks, cfg.prompt_options())
    vae = check_vae(cfg) if any(task.decodes_masks for task in tasks) else None
    inputs = resolve_job_inputs(cfg)
    check_parquet_columns(inputs, cfg)
    check_model_source(cfg.model, cfg.revision)
    config = read_config(cfg.model, cfg.revision)  # read once, for both engines' checks
    if cfg.engine == "vllm":
        check_vllm_checkpoint(cfg.model, config)
    check_quantization(cfg.quantization, config)
    images = image_settings(cfg.model, cfg.revision)
    check_tokenizer(cfg.model, cfg.revision)
    target = prepare_target(cfg.output, cfg.overwrite, cfg.partition_key_value,
                            job_identity(cfg) if cfg.resume else None)
    return CheckedJob(
        run_id=cfg.run_id or default_run_id(),
        tasks=tasks,
        inputs=inputs,
        vae=vae,
        image_size=images.size,
        resample=images.resample,
        target=target,
    )


def job_fields(cfg: JobConfig) -> dict:
    """What the job was asked to do, as recorded in every summary."""
    return {
        "input": cfg.input,
        "input_manifest": cfg.input_manifest,
        "since": cfg.since.isoformat() if cfg.since else None,
        "until": cfg.until.isoformat() if cfg.until else None,
        "output": cfg.output,
        "partition": cfg.partition,
        "model": cfg.model_name,
        "dtype": cfg.dtype,
        "quantization": cfg.quantization,
        "engine": cfg.engine,
        "tasks": cfg.tasks,
    }


def write_with_gpu_wait(ds, target: OutputTarget, device: str, gpu_wait_timeout: float) -> None:
    """Run the dataset into `target`; on cuda, while no GPU is there, say so and give up after the timeout."""
    if device != "cuda":
        write_annotations(ds, target)
        return
    with GpuWait(gpu_wait_timeout) as wait:
        try:
            write_annotations(ds, target)
        except KeyboardInterrupt:
            wait.raise_if_timed_out()  # our own interrupt: a clear error instead
            raise


def execute(cfg: JobConfig, job: CheckedJob) -> dict:
    """Run the checked job and return its summary, also written next to the rows (`_summary.json`)."""
    started = time.perf_counter()
    state = begin_run(job.target, job_identity(cfg), job.run_id, explicit_run_id=cfg.run_id is not None)
    if state.complete:
        summary = json.loads(job.target.filesystem.cat_file(f"{job.target.path}/{SUMMARY_FILE}"))
        return {**summary, "already_complete": True}
    resume = plan_resume(job.target.filesystem, state.written, job.inputs, job.tasks, cfg.prompt_options(),
                         cfg.uri_column)
    # Input files whose every task an earlier attempt wrote are not read again.
    inputs = dataclasses.replace(job.inputs, paths=[p for p in job.inputs.paths if p not in resume.finished_paths])
    placement, starts = None, []
    if inputs.paths:
        if not ray.is_initialized():
            ray.init(address=cfg.address)  # None: RAY_ADDRESS (e.g. under `ray job submit`) or a new local Ray
        placement = place_model(cfg, job.image_size)
        actor_log = start_actor_log()
        ds = build_dataset(cfg, inputs, job.image_size, job.resample, placement, state.run_id, job.vae,
                           finished=resume.finished, actor_log=actor_log)
        write_with_gpu_wait(ds, job.target, placement.device, cfg.gpu_wait_timeout)
        starts = ray.get(actor_log.starts.remote())
        ray.kill(actor_log)
    if job.target.partition:
        # Nothing new (no input files) rewrites the partition as empty: the guard applies to that too.
        check_replacement(job.target, cfg.replace_worse)
        commit_partition(job.target)
    wall_s = time.perf_counter() - started

    summary = {
        "status": "succeeded",
        "exit_code": 0,
        "run_id": state.run_id,
        # Resuming: what an earlier, unfinished attempt had written (kept) and what it left broken.
        "resumed": state.rows_before > 0 or state.dropped_files > 0,
        "rows_from_earlier_attempts": state.rows_before,
        "images_finished_earlier": resume.images_finished,
        "input_files_finished_earlier": len(resume.finished_paths),
        "unreadable_files_removed": state.dropped_files,
        **job_fields(cfg),
        "vae": job.vae,
        "input_kind": job.inputs.kind,
        "input_files": len(job.inputs.paths),
        "ignored_files": job.inputs.ignored,
        "outside_window_files": job.inputs.outside_window,
        **placement_summary(placement, starts),
        "wall_s": round(wall_s, 3),
        **summarize(job.target.filesystem, job.target.path),
    }
    summary["images_per_s"] = round(summary["images"] / wall_s, 3) if wall_s > 0 else None
    gpus = summary["gpus_used"]
    # The throughput --plan's GPU-hours estimate wants, measured on this run's GPUs.
    summary["requests_per_gpu_s"] = round(summary["rows"] / (wall_s * gpus), 3) if gpus and wall_s > 0 else None
    summary["finished_at"] = _now().isoformat()
    summary["summary_uri"] = job.target.filesystem.unstrip_protocol(f"{job.target.path}/_summary.json")
    summary = redact(summary)  # it echoes the flags: credentials in their URIs stay out
    write_summary(summary, job.target.filesystem, job.target.path)
    return summary


def annotate(cfg: JobConfig) -> dict:
    """Annotate the job's input into its output and return the run summary.

    Raises REFUSALS before Ray starts, so a bad command fails fast and cheaply; anything raised
    later is a failed run.
    """
    return execute(cfg, check_job(cfg))


def plan(cfg: JobConfig) -> dict:
    """What the run would do, from the listing alone: no model, no Ray, nothing written."""
    tasks = check_tasks(cfg.tasks, cfg.prompt_options())
    inputs = resolve_job_inputs(cfg)
    check_parquet_columns(inputs, cfg)
    return {"status": "planned", "exit_code": 0, **job_fields(cfg), **plan_summary(cfg, inputs, tasks)}


def run_job(flags: dict) -> dict:
    """Validate the flags, then plan or annotate; never raises.

    Returns the summary in every case, with `status` (succeeded, planned, refused, failed), its
    `exit_code` and, unless it succeeded, `error`; it is also written to `--summary-uri` when given.
    """
    started_at = _now().isoformat()
    cfg = None
    try:
        cfg = JobConfig.model_validate(flags)
        summary = plan(cfg) if cfg.plan else None
        job = None if cfg.plan else check_job(cfg)
    except (ValidationError, *REFUSALS) as err:
        summary = _ended("refused", one_line(err), cfg)
    else:
        if job is not None:
            try:
                summary = execute(cfg, job)
            except WorsePartitionError as err:  # a decision, not a crash: no traceback
                summary = {**_ended("failed", str(err), cfg), "run_id": job.run_id, "kept_old_partition": err.kept}
            except Exception as err:  # the scheduler gets a summary whatever went wrong
                print(redact_text(traceback.format_exc()), end="", file=sys.stderr)
                summary = {**_ended("failed", f"{type(err).__name__}: {err}", cfg), "run_id": job.run_id}
    summary.setdefault("run_id", cfg.run_id if cfg else flags.get("run_id"))
    summary["started_at"] = started_at
    # Summaries echo flags and error messages: what is returned, printed and written to --summary-uri carries
    # no credential of a URI or the environment (execute redacts the dataset's own _summary.json alike).
    summary = redact(summary)
    uri = cfg.summary_uri if cfg else flags.get("summary_uri")
    if uri:
        try:
            write_json(summary, uri)
        except Exception as err:  # a scheduler that cannot read the summary must see a failed run
            summary.update(redact(_ended("failed", f"cannot write the summary to {uri}: {type(err).__name__}: {err}")))
    return summary


def _ended(status: str, error: str, cfg: JobConfig | None = None) -> dict:
    return {"status": status, "exit_code": EXIT_CODES[status], "error": error, **(job_fields(cfg) if cfg else {}),
            "finished_at": _now().isoformat()}


def describe(summary: dict) -> str:
    """The one line a person reads at the end of a run."""
    if summary["status"] == "planned":
        hours = summary["estimated_gpu_hours"]
        return (f"plan: {summary['images']} images in {summary['input_files']} {summary['input_kind']} files -> "
                f"{summary['requests']} requests; "
                + (f"about {hours} GPU-hours at {summary['requests_per_gpu_s']} requests/s per GPU"
                   if hours is not None else "GPU-hours unknown: pass --requests-per-gpu-s")
                + (f"; model weights {summary['model_weights_mib_per_actor']} MiB per actor "
                   f"({summary['model_weights_dtype']}, quantization {summary['quantization']})"
                   if summary.get("model_weights_mib_per_actor") is not None else ""))
    if summary["status"] != "succeeded":
        return f"error: {summary['error']}"
    counts = ", ".join(
        f"{task}: " + " ".join(f"{status}={n}" for status, n in sorted(by_status.items()))
        for task, by_status in sorted(summary["rows_per_task_and_status"].items())
    )
    where = summary["output"] + (f" [{summary['partition']}]" if summary["partition"] else "")
    return (f"annotated {summary['images']} images into {summary['rows']} rows in {summary['wall_s']:.1f} s "
            f"({summary['images_per_s']} images/s) -> {where} [{counts}]")
