"""Filesystem plumbing shared by the readers and writers."""

from __future__ import annotations

import fsspec
import pyarrow.dataset as pads
import pyarrow.fs as pafs


def arrow_filesystem(filesystem: fsspec.AbstractFileSystem) -> pafs.FileSystem:
    """The fsspec filesystem as a pyarrow one, for Ray Data and pyarrow.dataset.

    Wrapping keeps gcsfs/s3fs and their settings (endpoint, credentials); a bare gs:// path would
    make Ray build pyarrow's own GCS client, which ignores them.
    """
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def annotation_dataset(filesystem: fsspec.AbstractFileSystem, path: str) -> pads.Dataset:
    """A written annotation dataset, unread: its Parquet files with the hive partition columns (`task`, ...)."""
    return pads.dataset(path, filesystem=arrow_filesystem(filesystem), format="parquet", partitioning="hive")
