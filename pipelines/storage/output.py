"""The layout of an annotation dataset, without Ray: the output target (a dataset or one partition),
`_job.json` and the resume state read back from written files, the partition's staging and swap,
`_summary.json`, the guard that keeps a partition from being replaced by a clearly worse one, and the
readers' check that a run finished. `stages/write.py` streams the rows."""

from __future__ import annotations

import json
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipelines.storage.filesystems import annotation_dataset, reads_with_threads

PARTITION_COLUMNS = ["task"]  # the dataset is hive-partitioned by task (below any --partition key)
# Leading underscores: Parquet readers skip these names.
SUMMARY_FILE = "_summary.json"  # written last: its presence marks a run (or a partition) complete
JOB_FILE = "_job.json"  # written first: the arguments of the run writing here, so a rerun can resume it
STAGING_DIR = "_staging"  # where a partition is written before it replaces the old one
# A rerun may replace a partition only with one holding, for every task of the old one, at least this fraction
# of its `ok` rows. A rerun of the same day finds the same files and gets about as many; a rerun with wrong flags
# (other classes, another model) gets next to none: issue #21, where every row of such a rerun was
# invalid_output and it replaced a good day. Half leaves room for a stricter model and for files removed since.
MIN_OK_FRACTION_OF_OLD = 0.5


class OutputExistsError(ValueError):
    """The output already holds data that this job may not add to, and --overwrite was not given."""


class WorsePartitionError(RuntimeError):
    """A run's new partition is clearly worse than the one it would replace, which was kept."""

    def __init__(self, message: str, kept: dict):
        super().__init__(message)
        self.kept = kept  # what was compared and where the new rows are, for the run's summary


class IncompleteOutputError(ValueError):
    """A reader was pointed at a dataset (or partition) whose run has not finished."""


def prepare_output(uri: str, overwrite: bool, job: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Refuse to mix runs in one dataset: an existing, non-empty output needs `overwrite`, unless it holds
    a run of the same `job` (the arguments recorded in `_job.json`), which this run then resumes."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    if filesystem.exists(path) and (not filesystem.isdir(path) or filesystem.ls(path)):
        if overwrite:
            filesystem.rm(path, recursive=True)
        elif job is None:
            raise OutputExistsError(f"output {uri} already exists; pass --overwrite to replace it")
        else:
            recorded = _read_job(filesystem, path)
            if recorded is None:
                raise OutputExistsError(f"output {uri} already exists and holds no run of this tool to resume "
                                        f"(no {JOB_FILE}); pass --overwrite to replace it")
            differs = sorted(key for key in {**job, **recorded} if recorded.get(key) != job.get(key))
            if differs:
                raise OutputExistsError(f"output {uri} holds a run with other arguments (different "
                                        f"{', '.join(differs)}); pass --overwrite to replace it, or choose another "
                                        "--output")
    return filesystem, path


def _read_job(filesystem: fsspec.AbstractFileSystem, path: str) -> dict | None:
    """The job recorded in `path/_job.json` (its run_id left out), or None."""
    try:
        recorded = json.loads(filesystem.cat_file(f"{path}/{JOB_FILE}"))
    except FileNotFoundError:
        return None
    recorded.pop("run_id", None)
    return recorded


@dataclass(frozen=True)
class OutputTarget:
    """Where a run's rows go: the whole dataset at `root`, or one `key=value` partition of it."""

    filesystem: fsspec.AbstractFileSystem
    root: str
    partition: tuple[str, str] | None = None

    @property
    def path(self) -> str:
        """The directory holding this run's rows (and its `_summary.json`)."""
        return f"{self.root}/{self.partition[0]}={self.partition[1]}" if self.partition else self.root

    @property
    def work_path(self) -> str:
        """Where the rows are written while the run goes on: the dataset itself, or the partition's
        staging directory (the same for every run of the partition, so a rerun finds it to resume)."""
        return f"{self.root}/{STAGING_DIR}/{self.path.rsplit('/', 1)[-1]}" if self.partition else self.root

    @property
    def uri(self) -> str:
        return self.filesystem.unstrip_protocol(self.path)


def prepare_target(
    uri: str, overwrite: bool, partition: tuple[str, str] | None = None, job: dict | None = None
) -> OutputTarget:
    """The output of a run. Without a partition, as `prepare_output`. With one, the dataset may hold
    other partitions of the same key (they are kept), but nothing else; the partition's staging is
    kept for this run to resume when it holds a run of the same `job`, else removed."""
    if partition is None:
        return OutputTarget(*prepare_output(uri, overwrite, job))
    filesystem, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    if filesystem.exists(root):
        if not filesystem.isdir(root):
            raise OutputExistsError(f"output {uri} is a file, not a dataset directory")
        key = partition[0]
        for entry in filesystem.ls(root, detail=True):
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(("_", ".")):
                continue  # summaries, staging: not data
            if entry["type"] != "directory" or not name.startswith(f"{key}="):
                raise OutputExistsError(f"output {uri} holds {name!r}, which is not a {key}=... partition; "
                                        "write partitions into a dataset of partitions only")
    target = OutputTarget(filesystem, root, partition)
    if filesystem.exists(target.work_path) and (job is None or _read_job(filesystem, target.work_path) != job):
        filesystem.rm(target.work_path, recursive=True)  # an earlier run's leftovers, of other arguments
    return target


@dataclass(frozen=True)
class WrittenFile:
    """One Parquet file an earlier attempt wrote, and the task partition it is in."""

    path: str
    task: str
    rows: int


@dataclass(frozen=True)
class RunState:
    """What the target held for this run when it began."""

    run_id: str  # stamped on the rows: the earlier attempt's when resuming it
    written: list[WrittenFile]  # the readable Parquet files of earlier attempts (see storage/completion.py)
    rows_before: int  # rows written by earlier attempts
    dropped_files: int  # unreadable files of earlier attempts (killed mid-write), removed
    complete: bool  # a finished run of the same job: nothing to do


def begin_run(target: OutputTarget, job: dict, run_id: str, explicit_run_id: bool) -> RunState:
    """Start the run in `target.work_path`, or pick up an earlier attempt of the same job there.

    A fresh run records `job` in `_job.json` before any row is written. An unfinished attempt (no
    `_summary.json`) is resumed: its Parquet files that cannot be read (a writer killed mid-file) are
    removed, and the others are listed, with their row counts, for `storage.completion` to find the
    finished work in. Only footers are read here, so this costs the same for ten thousand rows as for
    a million. `prepare_target` has already checked that a recorded job is this job.
    """
    filesystem, path = target.filesystem, target.work_path
    try:
        earlier_id = json.loads(filesystem.cat_file(f"{path}/{JOB_FILE}")).get("run_id", run_id)
    except FileNotFoundError:
        write_json({**job, "run_id": run_id}, filesystem.unstrip_protocol(f"{path}/{JOB_FILE}"))
        return RunState(run_id, [], 0, 0, complete=False)
    run_id = run_id if explicit_run_id else earlier_id
    if filesystem.exists(f"{path}/{SUMMARY_FILE}"):
        return RunState(run_id, [], 0, 0, complete=True)
    written, dropped = [], 0
    for file in sorted(filesystem.find(path)):
        relative = file[len(path):]
        if not file.endswith(".parquet") or "/_" in relative or "/." in relative:
            continue
        try:
            # Parquet writes its footer last: a file killed mid-write has none and fails here.
            with filesystem.open(file, "rb") as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
        except (OSError, ValueError, pa.ArrowException):
            # Removing a file that only failed to read costs its rows being generated again, never a duplicate.
            filesystem.rm(file)
            dropped += 1
            continue
        task = next(part.split("=", 1)[1] for part in relative.split("/") if part.startswith("task="))
        written.append(WrittenFile(file, task, rows))
    return RunState(run_id, written, sum(f.rows for f in written), dropped, complete=False)


def worse_partition_reasons(old_rows: dict[str, dict[str, int]], new_rows: dict[str, dict[str, int]],
                            min_ok_fraction: float = MIN_OK_FRACTION_OF_OLD) -> list[str]:
    """Why rows counted as `new_rows` must not replace a partition counted as `old_rows` (both
    `rows_per_task_and_status`); empty when they may. Compared per task, so a broken task is not hidden by
    a healthy one; a task the old partition has no `ok` row of cannot get worse, and a new task is welcome."""
    reasons = []
    for task, old_by_status in sorted(old_rows.items()):
        old_ok, new_ok = old_by_status.get("ok", 0), new_rows.get(task, {}).get("ok", 0)
        if old_ok and new_ok < min_ok_fraction * old_ok:
            new_statuses = ", ".join(f"{n} {status}" for status, n in sorted(new_rows.get(task, {}).items())
                                     if status != "ok")
            reasons.append(f"{task}: {new_ok} ok rows" + (f" ({new_statuses})" if new_statuses else "")
                           + f" where the old partition has {old_ok}")
    return reasons


def check_replacement(target: OutputTarget, replace_worse: bool = False,
                      min_ok_fraction: float = MIN_OK_FRACTION_OF_OLD) -> None:
    """Before `commit_partition`: raise WorsePartitionError, keeping the old partition and the staging,
    when the staged rows are clearly worse than the partition's (`worse_partition_reasons`), unless
    `replace_worse`. A first run of a partition has nothing to compare with."""
    filesystem = target.filesystem
    if target.partition is None or replace_worse or not filesystem.exists(target.path):
        return
    old = summarize(filesystem, target.path)["rows_per_task_and_status"]
    new = summarize(filesystem, target.work_path)["rows_per_task_and_status"]
    reasons = worse_partition_reasons(old, new, min_ok_fraction)
    if not reasons:
        return
    partition = "=".join(target.partition)
    staging = filesystem.unstrip_protocol(target.work_path)
    raise WorsePartitionError(
        f"kept the old partition {partition}: the new rows are worse ({'; '.join(reasons)}; at least "
        f"{min_ok_fraction:.0%} of the old ok rows per task are needed). The new rows stay in {staging} to "
        "inspect; rerun with --replace-worse to replace the partition with them anyway",
        {"partition": partition, "staging": staging, "reasons": reasons, "old_rows_per_task_and_status": old,
         "new_rows_per_task_and_status": new})


def commit_partition(target: OutputTarget) -> None:
    """Swap the partition's staging in for it (`replace_partition`) and drop `_staging/` once empty."""
    replace_partition(target, target.work_path)
    try:
        target.filesystem.rmdir(f"{target.root}/{STAGING_DIR}")  # only if empty: other partitions may be writing
    except OSError:
        pass


def replace_partition(target: OutputTarget, staging: str | None) -> None:
    """Put `staging` (or, for a run that found nothing, an empty directory) where the partition is."""
    filesystem = target.filesystem
    if filesystem.exists(target.path):
        filesystem.rm(target.path, recursive=True)
    if staging is None or not filesystem.exists(staging):  # Ray writes no directory for zero rows
        filesystem.makedirs(target.path, exist_ok=True)
    else:
        filesystem.mv(staging, target.path, recursive=True)


def committed_dataset(uri: str) -> pads.Dataset:
    """The annotation dataset at `uri`, once every run that wrote it has finished.

    Raises IncompleteOutputError when the dataset, or one of its `key=value` partitions, has no
    `_summary.json`: a run still going, or killed (rerun it to finish it). Other readers (pyarrow,
    pandas, Spark) see whatever files are there: check for `_summary.json` the same way.
    """
    filesystem, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    if not filesystem.isdir(path):
        raise IncompleteOutputError(f"no annotation dataset at {uri}")
    if not filesystem.exists(f"{path}/{SUMMARY_FILE}"):
        names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in filesystem.ls(path, detail=False)]
        partitions = [name for name in names if "=" in name and not name.startswith("task=")]
        unfinished = [name for name in partitions if not filesystem.exists(f"{path}/{name}/{SUMMARY_FILE}")]
        if not partitions or unfinished:
            where = f"partition {unfinished[0]} of {uri}" if unfinished else uri
            raise IncompleteOutputError(f"{where} has no {SUMMARY_FILE}: the run writing it has not finished "
                                        "(rerun the same command to finish it)")
    return annotation_dataset(filesystem, path)


def read_annotations(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A written annotation dataset (local or object storage) as one table, `task` included; refused
    while unfinished (`committed_dataset`)."""
    dataset = committed_dataset(uri)
    return dataset.to_table(columns=columns, use_threads=reads_with_threads(dataset))


def summarize(filesystem: fsspec.AbstractFileSystem, path: str) -> dict:
    """Counts read back from what was written: rows per task and status, distinct images."""
    dataset = annotation_dataset(filesystem, path) if filesystem.exists(path) else None
    if dataset is None or not dataset.files:
        return {"rows": 0, "images": 0, "rows_per_task_and_status": {}}
    table = dataset.to_table(columns=["task", "status", "image_id"], use_threads=reads_with_threads(dataset))
    counts = table.group_by(["task", "status"]).aggregate([("image_id", "count")])
    rows: dict[str, dict[str, int]] = {}
    for task, status, count in zip(*(counts.column(c).to_pylist() for c in ("task", "status", "image_id_count"))):
        rows.setdefault(str(task), {})[status] = count
    return {
        "rows": table.num_rows,
        "images": pc.count_distinct(table.column("image_id")).as_py() if table.num_rows else 0,
        "rows_per_task_and_status": rows,
    }


def write_summary(summary: dict, filesystem: fsspec.AbstractFileSystem, path: str) -> str:
    """`summary` as `path/_summary.json`; its URI."""
    return write_json(summary, filesystem.unstrip_protocol(f"{path.rstrip('/')}/{SUMMARY_FILE}"))


def write_json(document: dict, uri: str) -> str:
    """`document` as JSON at `uri` (local or object storage), parent directories created; the URI."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    if isinstance(filesystem, LocalFileSystem):  # object stores have no directories to make
        filesystem.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with filesystem.open(path, "w") as handle:
        json.dump(document, handle, indent=2, sort_keys=True, default=str)
    return filesystem.unstrip_protocol(path)
