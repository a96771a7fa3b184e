"""Read an annotation dataset in bounded batches, filtered, for the exporters and the report.

Memory holds one batch of rows (plus the Parquet row group being decoded), never the dataset:
the scanner reads ahead by at most one batch and one file. `iter_images` groups the rows of each
image (the dataset is partitioned by task, so they lie in different files) by spilling a large
dataset to a temporary Parquet dataset in hash buckets of image ids, read back one bucket at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import posixpath
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import fsspec
import pyarrow.dataset as pads

from pipelines.storage.filesystems import reads_with_threads
from pipelines.storage.output import committed_dataset

DEFAULT_BATCH_SIZE = 1024
# Rows held at once when grouping rows by image: about one spill bucket (`iter_images`).
ROWS_PER_BUCKET = 4096


@dataclass(frozen=True)
class RowFilter:
    """Which rows and objects to take: tasks and statuses (empty: all), and a minimum score.

    With `min_score`, boxes, masks and texts scoring below it are dropped, and so are those without
    a score, since a threshold cannot vouch for them; the row itself stays.
    """

    tasks: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    min_score: float | None = None

    def keeps(self, score: float | None) -> bool:
        return self.min_score is None or (score is not None and score >= self.min_score)


@dataclass(frozen=True)
class UrlMap:
    """`source_uri` prefix -> URL prefix, e.g. gs://bucket -> https://host/path; first match wins."""

    prefixes: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, specs: Sequence[str]) -> UrlMap:
        """From `FROM=TO` strings; ValueError names a malformed one."""
        pairs = []
        for spec in specs:
            source, sep, target = spec.partition("=")
            if not sep or not source:
                raise ValueError(f"--image-url-prefix wants FROM=TO, got {spec!r}")
            pairs.append((source, target))
        return cls(tuple(pairs))

    def url(self, source_uri: str) -> str:
        for source, target in self.prefixes:
            if source_uri.startswith(source):
                return target + source_uri[len(source):]
        return source_uri


def iter_rows(
    uri: str, columns: Sequence[str], row_filter: RowFilter = RowFilter(), batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[list[dict]]:
    """The dataset's rows as lists of at most `batch_size` dicts holding `columns`."""
    for batch in _scanner(committed_dataset(uri), columns, row_filter, batch_size).to_batches():
        if batch.num_rows:
            yield batch.to_pylist()


def _condition(row_filter: RowFilter) -> pads.Expression | None:
    condition = None
    if row_filter.tasks:
        condition = pads.field("task").isin(list(row_filter.tasks))
    if row_filter.statuses:
        by_status = pads.field("status").isin(list(row_filter.statuses))
        condition = by_status if condition is None else condition & by_status
    return condition


def _scanner(dataset: pads.Dataset, columns: Sequence[str], row_filter: RowFilter, batch_size: int) -> pads.Scanner:
    return dataset.scanner(columns=list(columns), filter=_condition(row_filter), batch_size=batch_size,
                           batch_readahead=1, fragment_readahead=1, use_threads=reads_with_threads(dataset))


def iter_images(
    uri: str, columns: Sequence[str], row_filter: RowFilter = RowFilter(), batch_size: int = DEFAULT_BATCH_SIZE,
    rows_per_bucket: int = ROWS_PER_BUCKET,
) -> Iterator[list[dict]]:
    """Every image's rows together: one list per image (ordered by task, then prompt), images in a
    fixed order (by bucket, then `image_id`). Memory holds about `rows_per_bucket` rows: the rows of
    a dataset with more are first spilled, as JSON lines of `columns`, into temporary files by a hash
    of `image_id`, then read back one file at a time. (An Arrow dataset as the spill kept over 100 MiB
    more in Arrow's memory pool for 40,000 rows; plain files keep it to one bucket.)"""
    columns = list(dict.fromkeys(["image_id", "task", "prompt", *columns]))
    dataset = committed_dataset(uri)
    buckets = max(1, math.ceil(dataset.count_rows(filter=_condition(row_filter)) / rows_per_bucket))
    rows = (row for batch in iter_rows(uri, columns, row_filter, batch_size) for row in batch)
    if buckets == 1:
        yield from _by_image(rows)
        return
    with tempfile.TemporaryDirectory(prefix="export-spill-") as spill:
        paths = [os.path.join(spill, f"{bucket:05d}.jsonl") for bucket in range(buckets)]
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(path, "w", encoding="utf-8")) for path in paths]
            for row in rows:
                files[zlib.crc32(row["image_id"].encode("utf-8")) % buckets].write(json.dumps(row) + "\n")
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                bucket_rows = [json.loads(line) for line in handle]
            yield from _by_image(bucket_rows)


def _by_image(rows) -> Iterator[list[dict]]:
    ordered = sorted(rows, key=lambda row: (row["image_id"], row["task"], row["prompt"]))
    for _, group in itertools.groupby(ordered, key=lambda row: row["image_id"]):
        yield list(group)


def common_root(uris: Sequence[str]) -> str:
    """The longest directory prefix (ending in '/') that all `uris` share; '' when none."""
    root = posixpath.commonprefix(list(uris))
    return root[:root.rfind("/") + 1]


def relative_name(source_uri: str, root: str) -> str:
    """`source_uri` below `root` (see `common_root`): unique among URIs sharing that root; a
    WebDataset member keeps its shard (`shard-0.tar#a.png`)."""
    name = source_uri[len(root):] if root and source_uri.startswith(root) else re.sub(r"^[a-z][a-z0-9+.-]*://", "",
                                                                                      source_uri)
    return name.lstrip("/")


def objects_of(row: dict, row_filter: RowFilter = RowFilter()) -> Iterator[tuple[dict, dict | None]]:
    """The row's objects as (box, mask or None). A `segment` box and its mask are one object: the
    mask with the same label and box replaces the box's score with its own."""
    masks = {_key(mask): mask for mask in row.get("masks") or []}
    for box in row.get("boxes") or []:
        mask = masks.pop(_key(box), None)
        score = (mask or box)["score"]
        if row_filter.keeps(score):
            yield box, mask


def _key(item: dict) -> tuple:
    return item["label"], item["x_min"], item["y_min"], item["x_max"], item["y_max"]


def source_bytes(source_uri: str) -> bytes:
    """The encoded image a row came from: a file (local or object storage) or a WebDataset member
    (`shard.tar#key.ext`). A Parquet row (`file.parquet#row=...`) is not fetched: ValueError."""
    path, _, member = source_uri.partition("#")
    if member and not path.endswith(".tar"):
        raise ValueError(f"cannot fetch {source_uri!r}: only files and tar members are read")
    with fsspec.open(path, "rb") as handle:
        if not member:
            return handle.read()
        with tarfile.open(fileobj=handle) as tar:
            return tar.extractfile(member).read()
