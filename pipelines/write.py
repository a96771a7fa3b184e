"""Write the annotation dataset (hive-partitioned Parquet) and its run summary."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from fsspec.implementations.local import LocalFileSystem

from pipelines.storage import annotation_dataset, arrow_filesystem

PARTITION_COLUMNS = ["task"]
SUMMARY_FILE = "_summary.json"  # leading underscore: Parquet readers skip it
STAGING_DIR = "_staging"  # where a partition is written before it replaces the old one; readers skip it


class OutputExistsError(ValueError):
    """The output already holds data and --overwrite was not given."""


def prepare_output(uri: str, overwrite: bool) -> tuple[fsspec.AbstractFileSystem, str]:
    """Refuse to mix runs in one dataset: an existing, non-empty output needs `overwrite`."""
    filesystem, path = fsspec.core.url_to_fs(uri)
    if filesystem.exists(path) and (not filesystem.isdir(path) or filesystem.ls(path)):
        if not overwrite:
            raise OutputExistsError(f"output {uri} already exists; pass --overwrite to replace it")
        filesystem.rm(path, recursive=True)
    return filesystem, path


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
    def uri(self) -> str:
        return self.filesystem.unstrip_protocol(self.path)


def prepare_target(uri: str, overwrite: bool, partition: tuple[str, str] | None = None) -> OutputTarget:
    """The output of a run. Without a partition, as `prepare_output`. With one, the dataset may hold
    other partitions of the same key (they are kept), but nothing else."""
    if partition is None:
        return OutputTarget(*prepare_output(uri, overwrite))
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
    return OutputTarget(filesystem, root, partition)


def write_annotations(ds: ray.data.Dataset, target: OutputTarget) -> None:
    """Stream the dataset to `<target>/task=<name>/*.parquet`; the driver never holds the rows.

    A partition is first written whole under `_staging/`, then swapped in for the old one: a failed
    run leaves the old partition as it was, and a rerun replaces it rather than adding to it. The swap
    is a rename on local disks; on object stores it copies objects, so readers may briefly see the
    partition missing. Its `_summary.json`, written after the swap, marks it complete.
    """
    if target.partition is None:
        _write_parquet(ds, target.filesystem, target.path)
        return
    staging = f"{target.root}/{STAGING_DIR}/{target.path.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}"
    try:
        _write_parquet(ds, target.filesystem, staging)
        replace_partition(target, staging)
    finally:
        if target.filesystem.exists(staging):
            target.filesystem.rm(staging, recursive=True)
        try:
            target.filesystem.rmdir(staging.rsplit("/", 1)[0])  # only if empty: other partitions may be writing
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


def _write_parquet(ds: ray.data.Dataset, filesystem: fsspec.AbstractFileSystem, path: str) -> None:
    ds.write_parquet(path, filesystem=arrow_filesystem(filesystem), partition_cols=PARTITION_COLUMNS)


def read_annotations(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A written annotation dataset (local or object storage) as one table, `task` included."""
    return annotation_dataset(*fsspec.core.url_to_fs(uri)).to_table(columns=columns)


def summarize(filesystem: fsspec.AbstractFileSystem, path: str) -> dict:
    """Counts read back from what was written: rows per task and status, distinct images."""
    dataset = annotation_dataset(filesystem, path) if filesystem.exists(path) else None
    if dataset is None or not dataset.files:
        return {"rows": 0, "images": 0, "rows_per_task_and_status": {}}
    table = dataset.to_table(columns=["task", "status", "image_id"])
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
