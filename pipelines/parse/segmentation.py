"""Segmentation answers -> boxes and full-image masks, with a reason for everything discarded.

A `segment` entry is `<loc>`x4 + `<seg>`x16 + label. The 16 codewords become a 64x64 mask in
the model stage (the VQ-VAE decoder runs on the actor's device, one call per batch); this module
decides which entries carry usable codewords (`mask_codes`, used by both sides so they agree on
the order) and, given the decoded masks, places them on the original image (`parse_segments`).
"""

from __future__ import annotations

import numpy as np

from pipelines.geometry import place_mask
from pipelines.parse.detection import describe_entry, entry_to_box, normalised_classes
from pipelines.parse.entries import Entry, split_entries
from schemas.annotations import Box, Mask, Rle

CODES_PER_MASK = 16  # a 4x4 grid of codewords
NUM_CODES = 128  # <seg000> .. <seg127>
MASK_SIZE = 64  # the decoder's output is MASK_SIZE x MASK_SIZE


def pack_mask_logits(mask_logits: np.ndarray) -> bytes:
    """(n, 64, 64) decoder output -> the bytes that travel between stages (b"" when n == 0)."""
    return np.ascontiguousarray(mask_logits, dtype=np.float32).tobytes()


def unpack_mask_logits(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype=np.float32).reshape(-1, MASK_SIZE, MASK_SIZE)


def entry_codes(entry: Entry) -> tuple[int, ...]:
    """The entry's 16 codewords; raises ValueError saying why they cannot make a mask."""
    if not entry.segs:
        raise ValueError("no segmentation codewords")
    if len(entry.segs) != CODES_PER_MASK:
        raise ValueError(f"{len(entry.segs)} segmentation codewords, expected {CODES_PER_MASK}")
    if any(code >= NUM_CODES for code in entry.segs):
        raise ValueError(f"segmentation codeword out of range 0..{NUM_CODES - 1}")
    return entry.segs


def mask_codes(text: str) -> list[tuple[int, ...]]:
    """The codewords of every entry that has a full, in-range set, in answer order."""
    codes = []
    for entry in split_entries(text):
        try:
            codes.append(entry_codes(entry))
        except ValueError:
            continue
    return codes


def parse_segments(
    text: str, classes: tuple[str, ...], image_wh: tuple[int, int], mask_logits: np.ndarray
) -> tuple[list[Box], list[Mask], list[str]]:
    """Parse a `segment` answer whose decoded masks are `mask_logits`.

    Args:
        text: the generated answer.
        classes: the requested class names.
        image_wh: original (width, height) in pixels.
        mask_logits: (n, S, S) decoder output, one per entry of `mask_codes(text)`, in order.

    Returns:
        (boxes, masks, problems): every valid box (with or without a mask), the masks placed on
        the original image, and one message per discarded entry or mask.
    """
    entries = split_entries(text)
    if len(mask_logits) != len(mask_codes(text)):
        raise ValueError(f"{len(mask_logits)} decoded masks for {len(mask_codes(text))} codeword sets")
    wanted = normalised_classes(classes)
    boxes: list[Box] = []
    masks: list[Mask] = []
    problems: list[str] = []
    decoded = iter(mask_logits)
    for entry in entries:
        try:
            entry_codes(entry)
            logits = next(decoded)
        except ValueError as err:
            logits = None
            no_mask_reason = str(err)
        try:
            box = entry_to_box(entry, wanted, image_wh)
        except ValueError as err:
            problems.append(describe_entry(err, entry))
            continue
        boxes.append(box)
        if logits is None:
            problems.append(describe_entry(f"{no_mask_reason}, box kept without a mask", entry))
            continue
        pixels = place_mask(logits, (box.x_min, box.y_min, box.x_max, box.y_max), image_wh)
        if not pixels.any():
            problems.append(describe_entry("mask is empty, box kept without a mask", entry))
            continue
        try:
            masks.append(Mask(**box.model_dump(), rle=Rle.from_binary(pixels)))
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            problems.append(describe_entry(f"invalid mask, box kept without it ({err})", entry))
    return boxes, masks, problems
