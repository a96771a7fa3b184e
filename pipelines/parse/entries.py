"""Split PaliGemma's ` ; `-separated location answers into entries.

`detect` answers `<locY1><locX1><locY2><locX2> label ; ...` and `segment` adds 16 `<segNNN>`
codewords after the locations. Both parsers start from the same entries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PIECE = re.compile(r"[^;]+")
_LEADING_TOKENS = re.compile(r"\s*<(loc|seg)(\d+)>")
EXCERPT_CHARS = 80


@dataclass(frozen=True)
class Entry:
    """One ` ; `-separated piece of a location answer, before any validation."""

    text: str
    locs: tuple[int, ...]  # <locNNNN> values in order of appearance, before the label
    segs: tuple[int, ...]  # <segNNN> values in order of appearance, before the label
    label: str  # what follows the tokens, stripped; may be empty
    # Where the entry, and its run of codewords, are in the answer text: [start, end) character
    # offsets, for scores. `seg_span` is empty when there are no codewords.
    span: tuple[int, int] = (0, 0)
    seg_span: tuple[int, int] = (0, 0)
    loc_span: tuple[int, int] = (0, 0)  # the run of <loc> tokens; empty when there are none


def split_entries(text: str) -> list[Entry]:
    """Split `text` on ';' and read each piece's leading loc/seg tokens and trailing label.

    Tokens are read only at the start of a piece, locs before segs (spaces between tokens are
    allowed), so a label can contain anything but ';', and a token out of that order (a loc after
    a seg, or any token after the label) stays in the label and then fails label validation.
    """
    entries = []
    for match in _PIECE.finditer(text):
        raw = match.group()
        piece = raw.strip()
        if not piece:
            continue
        offset = match.start() + len(raw) - len(raw.lstrip())  # where `piece` starts in `text`
        locs: list[int] = []
        segs: list[int] = []
        seg_span = [0, 0]
        loc_end = 0
        position = 0
        while (token := _LEADING_TOKENS.match(piece, position)) and not (token.group(1) == "loc" and segs):
            (locs if token.group(1) == "loc" else segs).append(int(token.group(2)))
            if token.group(1) == "loc":
                loc_end = token.end()
            if token.group(1) == "seg":
                seg_span = [seg_span[0] if len(segs) > 1 else token.start(1) - 1, token.end()]  # from its '<'
            position = token.end()
        entries.append(Entry(
            text=piece, locs=tuple(locs), segs=tuple(segs), label=piece[position:].strip(),
            span=(offset, offset + len(piece)), seg_span=(offset + seg_span[0], offset + seg_span[1]),
            loc_span=(offset, offset + loc_end),
        ))
    return entries


def _normalise(label: str) -> str:
    return " ".join(label.split()).casefold()


def normalised_classes(classes: tuple[str, ...]) -> dict[str, str]:
    """Normalised label -> requested spelling, so `Traffic  Light` matches `traffic light`."""
    return {_normalise(name): name for name in classes}


def find_class(label: str, classes: dict[str, str]) -> str | None:
    """The requested spelling of `label`, or None when it was not requested."""
    return classes.get(_normalise(label))


def describe_entry(problem: object, entry: Entry) -> str:
    """One problem message that points at its entry (the whole answer is in raw_output)."""
    text = entry.text
    # Keep both ends: a segment entry's label comes after some 200 characters of tokens.
    excerpt = text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS // 2] + "..." + text[-EXCERPT_CHARS // 2:]
    return f"{problem}: {excerpt!r}"
