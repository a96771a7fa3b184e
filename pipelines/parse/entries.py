"""Split PaliGemma's ` ; `-separated location answers into entries.

`detect` answers `<locY1><locX1><locY2><locX2> label ; ...` and `segment` adds 16 `<segNNN>`
codewords after the locations. Both parsers start from the same entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTRY_SEPARATOR = re.compile(r"\s*;\s*")
_LEADING_TOKENS = re.compile(r"\s*<(loc|seg)(\d+)>")


@dataclass(frozen=True)
class Entry:
    """One ` ; `-separated piece of a location answer, before any validation."""

    text: str
    locs: tuple[int, ...]  # <locNNNN> values in order of appearance, before the label
    segs: tuple[int, ...]  # <segNNN> values in order of appearance, before the label
    label: str  # what follows the tokens, stripped; may be empty


def split_entries(text: str) -> list[Entry]:
    """Split `text` on ';' and read each piece's leading loc/seg tokens and trailing label.

    Tokens are read only at the start of a piece, so a label can contain anything but ';' and
    a token that appears after the label stays in the label (and then fails label validation).
    """
    entries = []
    for piece in _ENTRY_SEPARATOR.split(text.strip()):
        if not piece:
            continue
        locs: list[int] = []
        segs: list[int] = []
        position = 0
        while match := _LEADING_TOKENS.match(piece, position):
            (locs if match.group(1) == "loc" else segs).append(int(match.group(2)))
            position = match.end()
        entries.append(Entry(text=piece, locs=tuple(locs), segs=tuple(segs), label=piece[position:].strip()))
    return entries
