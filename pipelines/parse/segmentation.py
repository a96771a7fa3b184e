"""Segmentation answers -> boxes and full-image masks, with a reason for everything discarded.

A `segment` entry is `<loc>`x4 + `<seg>`x16 + label. The 16 codewords become a 64x64 mask in
the model stage (the VQ-VAE decoder runs on the actor's device, one call per batch). Which entries
carry usable codewords is decided here, by `codeword_problem`, for both stages: the model stage
decodes `mask_codes(text)` in order, and `parse_segments` hands those masks out in the same order.
"""

from __future__ import annotations

import numpy as np

from pipelines.parse.detection import box_score, discount, entry_to_box, repeat_discounts
from pipelines.parse.entries import Entry, describe_entry, normalised_classes, split_entries
from pipelines.parse.geometry import box_xyxy_px_to_pixel_span, place_mask
from pipelines.parse.scores import TokenLogprobs
from schemas.annotations import Box, Mask, Rle

CODES_PER_MASK = 16  # a 4x4 grid of codewords
NUM_CODES = 128  # <seg000> .. <seg127>


def codeword_problem(entry: Entry) -> str | None:
    """Why the entry's codewords cannot make a mask, or None when they can."""
    if not entry.segs:
        return "no segmentation codewords"
    if len(entry.segs) != CODES_PER_MASK:
        return f"{len(entry.segs)} of {CODES_PER_MASK} segmentation codewords"
    if any(code >= NUM_CODES for code in entry.segs):
        return f"segmentation codeword out of range 0..{NUM_CODES - 1}"
    return None


def mask_codes(text: str) -> list[tuple[int, ...]]:
    """The codewords of every entry that can make a mask, in answer order."""
    return [entry.segs for entry in split_entries(text) if codeword_problem(entry) is None]


def mask_score(entry: Entry, tokens: TokenLogprobs | None) -> float | None:
    """A mask's confidence: its box's score (`box_score`: the chance the box is right) times the
    geometric mean probability of its 16 codewords, the model's confidence in the shape inside it."""
    if tokens is None:
        return None
    box = box_score(entry, tokens)
    codewords = tokens.score_of([entry.seg_span])
    return box if codewords is None else box * codewords


def parse_segments(
    text: str,
    classes: tuple[str, ...],
    image_wh: tuple[int, int],
    mask_logits: np.ndarray,
    tokens: TokenLogprobs | None = None,
) -> tuple[list[Box], list[Mask], list[str]]:
    """Parse a `segment` answer whose decoded masks are `mask_logits`.

    Args:
        text: the generated answer.
        classes: the requested class names.
        image_wh: original (width, height) in pixels.
        mask_logits: (n, S, S) decoder output, one per entry of `mask_codes(text)`, in order.
        tokens: the answer's token log-probabilities; boxes then get a `score` as in `detect`
            (locations and label, and the discount of a repeated box) and masks one that also covers
            the codewords (`mask_score`).

    Returns:
        (boxes, masks, problems): every valid box (with or without a mask), the masks placed on
        the original image, and one message per discarded entry or mask.
    """
    entries = split_entries(text)
    coded = [index for index, entry in enumerate(entries) if codeword_problem(entry) is None]
    problems: list[str] = []
    if len(coded) == len(mask_logits):
        logits_of = dict(zip(coded, mask_logits, strict=True))
    else:  # not the model's fault: the stages disagree, so keep the boxes and trust no mask
        logits_of = {}
        problems.append(f"{len(mask_logits)} decoded masks for {len(coded)} codeword sets, no mask kept")
    wanted = normalised_classes(classes)
    boxes: list[Box] = []
    masks: list[Mask] = []
    mask_of_box: dict[int, int] = {}
    for index, entry in enumerate(entries):
        try:
            box = entry_to_box(entry, wanted, image_wh, tokens)
        except ValueError as err:
            # An answer cut inside its codewords has no label either: the codewords say what happened.
            cut = codeword_problem(entry) if entry.segs and not entry.label else None
            problems.append(describe_entry(f"{cut}, and no label" if cut else err, entry))
            continue
        boxes.append(box)
        if no_mask := _mask_problem(entry, box, image_wh):
            problems.append(describe_entry(f"{no_mask}, box kept without a mask", entry))
            continue
        if index not in logits_of:
            continue
        pixels = place_mask(logits_of[index], (box.x_min, box.y_min, box.x_max, box.y_max), image_wh)
        if not pixels.any():
            problems.append(describe_entry("mask is empty, box kept without a mask", entry))
            continue
        masks.append(Mask(**{**box.model_dump(), "score": mask_score(entry, tokens)}, rle=Rle.from_binary(pixels)))
        mask_of_box[len(boxes) - 1] = len(masks) - 1
    # a box that repeats an earlier one (`repeat_discounts`) discounts its mask's score alike
    for index, factor in enumerate(repeat_discounts(boxes)):
        boxes[index] = discount(boxes[index], factor)
        if index in mask_of_box:
            masks[mask_of_box[index]] = discount(masks[mask_of_box[index]], factor)
    return boxes, masks, problems


def _mask_problem(entry: Entry, box: Box, image_wh: tuple[int, int]) -> str | None:
    if problem := codeword_problem(entry):
        return problem
    x0, y0, x1, y1 = box_xyxy_px_to_pixel_span((box.x_min, box.y_min, box.x_max, box.y_max), image_wh)
    if x1 <= x0 or y1 <= y0:
        return "box covers no whole pixel"
    return None
