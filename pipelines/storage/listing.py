"""Which files a run covers: modification-time windows over a listing, and manifests of URIs.

Pure helpers over fsspec listings; `pipelines/read.py` turns their result into an InputFiles.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import fsspec
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from pipelines.storage.filesystems import arrow_filesystem

UTC = datetime.timezone.utc


class ListingError(ValueError):
    """A listing or manifest cannot be used as asked."""


def modified_at(info: dict) -> datetime.datetime | None:
    """An fsspec file entry's modification time in UTC, or None when the filesystem reports none.

    Local files report `mtime` as epoch seconds, gcsfs as a datetime, s3fs as `LastModified`.
    """
    value = info.get("mtime", info.get("LastModified", info.get("last_modified")))
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class TimeWindow:
    """Files modified in [since, until); either end may be open."""

    since: datetime.datetime | None = None
    until: datetime.datetime | None = None

    def __bool__(self) -> bool:
        return self.since is not None or self.until is not None

    def contains(self, path: str, info: dict) -> bool:
        when = modified_at(info)
        if when is None:
            raise ListingError(f"the filesystem reports no modification time for {path}; --since/--until "
                               "cannot be used with it (list the files in --input-manifest instead)")
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


def read_manifest(uri: str, column: str) -> list[str]:
    """The URIs listed in a .parquet or .csv manifest, in order, without repeats.

    Raises ListingError when the file is missing, of another kind, lacks `column` or has an empty entry.
    """
    filesystem, path = fsspec.core.url_to_fs(uri)
    if not filesystem.isfile(path):
        raise ListingError(f"input manifest not found: {uri}")
    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix == "parquet":
        table = pq.read_table(path, filesystem=arrow_filesystem(filesystem))
    elif suffix == "csv":
        with filesystem.open(path, "rb") as handle:
            table = pcsv.read_csv(handle)
    else:
        raise ListingError(f"input manifest {uri} is neither .parquet nor .csv")
    if column not in table.column_names:
        raise ListingError(f"input manifest {uri} has no column {column!r} (--manifest-column); its columns are "
                           f"{', '.join(table.column_names)}")
    uris = [value.strip() if isinstance(value, str) else value for value in table.column(column).to_pylist()]
    empty = [row for row, value in enumerate(uris) if not value]
    if empty:
        raise ListingError(f"input manifest {uri} has no URI in row {empty[0]} ({len(empty)} empty rows)")
    return list(dict.fromkeys(uris))  # a URI listed twice is still one input, annotated once


def missing_files(filesystem: fsspec.AbstractFileSystem, paths: list[str]) -> list[str]:
    """The paths that are not files, checked with one listing per parent directory rather than one
    request per file (object stores answer a listing of many objects in one call)."""
    by_parent: dict[str, list[str]] = {}
    for path in paths:
        by_parent.setdefault(path.rsplit("/", 1)[0] if "/" in path else "", []).append(path)
    missing = []
    for parent, children in by_parent.items():
        try:
            present = {
                filesystem._strip_protocol(entry["name"])
                for entry in filesystem.ls(parent, detail=True)
                if entry.get("type") == "file"
            }
        except FileNotFoundError:
            present = set()
        missing += [child for child in children if filesystem._strip_protocol(child) not in present]
    return missing
