"""A large annotation dataset for memory checks: many rows with long answers, in small row groups."""

from __future__ import annotations

import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.storage.output import SUMMARY_FILE
from schemas.rows import LABEL_ROW_SCHEMA

ROWS_PER_FILE = 5000
ROW_GROUP = 1000
ANSWER_CHARS = 8192


def write_many_rows(output: Path, rows: int, report_size: bool = False):
    """`rows` detect rows of 2 boxes and an 8 KiB `raw_output` each, written file by file (the
    writer never holds them all); with `report_size`, also their size as one Arrow table, in MiB."""
    directory = output / "task=detect"
    directory.mkdir(parents=True)
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    total_bytes = 0
    for start in range(0, rows, ROWS_PER_FILE):
        count = min(ROWS_PER_FILE, rows - start)
        ids = [f"{i:016x}" for i in range(start, start + count)]
        columns = {
            "image_id": ids,
            "source_uri": [f"gs://bucket/images/{i}.jpg" for i in ids],
            "width": [640] * count, "height": [480] * count,
            "prompt": ["detect car ; person"] * count, "model": ["m"] * count,
            "raw_output": [(f"{i} " * ANSWER_CHARS)[:ANSWER_CHARS] for i in ids], "finish_reason": ["stop"] * count,
            "status": ["ok"] * count, "error": [None] * count,
            "boxes": [[{"label": "car", "x_min": 1.0, "y_min": 2.0, "x_max": 30.0, "y_max": 40.0, "score": 0.5},
                       {"label": "person", "x_min": 5.0, "y_min": 6.0, "x_max": 70.0, "y_max": 80.0, "score": 0.25}]]
            * count,
            "masks": [[]] * count, "text": [None] * count, "text_score": [None] * count,
            "run_id": ["r"] * count, "created_at": [when] * count,
        }
        schema = pa.schema([field for field in LABEL_ROW_SCHEMA if field.name != "task"])
        table = pa.Table.from_pydict(columns, schema=schema)
        total_bytes += table.nbytes
        pq.write_table(table, directory / f"part-{start // ROWS_PER_FILE:04d}.parquet", row_group_size=ROW_GROUP)
    (output / SUMMARY_FILE).write_text("{}")  # a finished run's marker: readers refuse a dataset without it
    return (output, total_bytes // 2 ** 20) if report_size else output
