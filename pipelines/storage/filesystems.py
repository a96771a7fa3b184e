"""Filesystem plumbing shared by the readers and writers."""

from __future__ import annotations

import fsspec
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem


def arrow_filesystem(filesystem: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """The fsspec filesystem as a pyarrow one, for Ray Data and pyarrow.dataset.

    Wrapping keeps gcsfs/s3fs and their settings (endpoint, credentials); a bare gs:// path would
    make Ray build pyarrow's own GCS client, which ignores them.
    """
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def annotation_dataset(filesystem: fsspec.AbstractFileSystem, path: str) -> pads.Dataset:
    """A written annotation dataset, unread: its Parquet files with the hive partition columns (`task`, ...).

    A local one is read through pyarrow's own filesystem. Through the fsspec wrapper pyarrow's reader
    threads call back into Python, and a process that ended right after a threaded read aborted at exit
    ("terminate called without an active exception", exit 134; 8 of 10 runs of a bare read): readers of a
    wrapped (object storage) dataset read without threads (`reads_with_threads`)."""
    native = isinstance(filesystem, LocalFileSystem)
    return pads.dataset(path, filesystem=pafs.LocalFileSystem() if native else arrow_filesystem(filesystem),
                        format="parquet", partitioning="hive")


def reads_with_threads(dataset: pads.Dataset) -> bool:
    """Whether pyarrow may read `dataset` with its thread pool: not through a Python filesystem (above)."""
    return not isinstance(dataset.filesystem, pafs.PyFileSystem)
