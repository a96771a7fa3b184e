"""Write JSON arrays one element at a time, so output size never has to fit in memory."""

from __future__ import annotations

import json
from typing import TextIO


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
