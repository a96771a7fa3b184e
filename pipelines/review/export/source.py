"""Read an annotation dataset in bounded batches, filtered, for the exporters and the report.

Memory holds one batch of rows (plus the Parquet row group being decoded), never the dataset:
the scanner reads ahead by at most one batch and one file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow.dataset as pads

from pipelines.storage.output import committed_dataset

DEFAULT_BATCH_SIZE = 1024


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
    dataset = committed_dataset(uri)
    condition = None
    if row_filter.tasks:
        condition = pads.field("task").isin(list(row_filter.tasks))
    if row_filter.statuses:
        by_status = pads.field("status").isin(list(row_filter.statuses))
        condition = by_status if condition is None else condition & by_status
    scanner = dataset.scanner(columns=list(columns), filter=condition, batch_size=batch_size,
                              batch_readahead=1, fragment_readahead=1)
    for batch in scanner.to_batches():
        if batch.num_rows:
            yield batch.to_pylist()


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
