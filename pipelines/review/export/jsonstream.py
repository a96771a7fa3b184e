"""Write JSON arrays one element at a time, so output size never has to fit in memory."""

from __future__ import annotations

import json
from typing import TextIO

import fsspec


class JsonArrayWriter:
    """`[`, elements separated by commas, `]`: a valid JSON array whatever the count."""

    def __init__(self, handle: TextIO):
        self.handle = handle
        self.count = 0

    def __enter__(self) -> JsonArrayWriter:
        self.handle.write("[")
        return self

    def write(self, element: object) -> None:
        self.handle.write(("," if self.count else "") + "\n" + json.dumps(element, separators=(",", ":")))
        self.count += 1

    def __exit__(self, *exc) -> None:
        self.handle.write("\n]")


def shard_path(folder: str, stem: str, index: int) -> str:
    """`folder/stem-00000.json`: shards sort in the order they were written."""
    return f"{folder.rstrip('/')}/{stem}-{index:05d}.json"


class ShardedArrayWriter:
    """JSON arrays of at most `size` elements each, one file per array (`shard_path`), every file a
    whole array on its own; at least one file, empty when nothing is written."""

    def __init__(self, folder: str, stem: str, size: int):
        if size < 1:
            raise ValueError(f"a shard holds at least one element, not {size}")
        self.folder, self.stem, self.size = folder, stem, size
        self.count = 0
        self.paths: list[str] = []
        self._file = None
        self._array: JsonArrayWriter | None = None

    def _next_file(self) -> None:
        self._close()
        self.paths.append(shard_path(self.folder, self.stem, len(self.paths)))
        self._file = fsspec.open(self.paths[-1], "w").open()
        self._array = JsonArrayWriter(self._file).__enter__()

    def _close(self) -> None:
        if self._array is not None:
            self._array.__exit__(None, None, None)
            self._file.close()
            self._array = self._file = None

    def __enter__(self) -> ShardedArrayWriter:
        return self

    def write(self, element: object) -> None:
        if self._array is None or self._array.count == self.size:
            self._next_file()
        self._array.write(element)
        self.count += 1

    def __exit__(self, *exc) -> None:
        if not self.paths and exc[0] is None:
            self._next_file()
        self._close()
