"""The guarantee every pipeline test checks: each (image, task, prompt) is exactly one output row."""

from collections import Counter

import pyarrow as pa

KEY = ("image_id", "task", "prompt")


def assert_each_once(rows: pa.Table | list[dict], count: int | None = None, key: tuple[str, ...] = KEY) -> list[tuple]:
    """No key written twice, and, given `count`, exactly `count` keys (so none lost); the keys.

    `rows` is an output table or its rows; `key` the columns that name one unit of work."""
    records = rows.select(list(key)).to_pylist() if isinstance(rows, pa.Table) else rows
    keys = [tuple(record[name] for name in key) for record in records]
    doubled = [k for k, n in Counter(keys).items() if n > 1]
    assert not doubled, f"{len(doubled)} {'/'.join(key)} written more than once, e.g. {doubled[:3]}"
    if count is not None:
        assert len(keys) == count, f"{len(keys)} {'/'.join(key)} rows where {count} were expected"
    return keys
