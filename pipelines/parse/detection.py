"""Detection answers -> boxes in original pixels, with a reason for every entry that was discarded."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from pipelines.parse.entries import Entry, describe_entry, find_class, normalised_classes, split_entries
from pipelines.parse.geometry import loc_yxyx_1024_to_box_xyxy_px
from pipelines.parse.scores import TokenLogprobs
from schemas.annotations import Box

LOCS_PER_BOX = 4
MAX_LOC = 1023


# A coordinate counts as right within 1/LOCATION_TOLERANCE of the box's side (at least one bin): with
# all four within it, the box overlaps the true one at IoU >= 0.56 whichever way each edge is off.
LOCATION_TOLERANCE = 8


# A box of the same label as an earlier box of the answer, overlapping it at least this much, repeats it
# (COCO's matching threshold: of the two, at most one matches a true object that the other does not).
REPEAT_IOU = 0.5


def location_tolerances(locs: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Per `<loc>` token of a box (y_min, x_min, y_max, x_max), the tolerance in bins."""
    y_min, x_min, y_max, x_max = locs
    ty, tx = (max(1, extent // LOCATION_TOLERANCE) for extent in (y_max - y_min, x_max - x_min))
    return ty, tx, ty, tx


def box_score(entry: Entry, tokens: TokenLogprobs | None) -> float | None:
    """The chance that the box is right, as the model sees it: for each of its four coordinates, the
    share of the location probability within `location_tolerances` of the chosen bin
    (`TokenLogprobs.location_mass`; the model's belief spreads over neighbouring bins that give the
    same box to within a pixel or two), times the probability of the rest of its entry (the label's
    tokens and any space before them; not the codewords, nor the ` ; ` separators and
    end-of-sequence token, which belong to no entry).

    Each coordinate's mass is taken given the coordinates written before it, as the model wrote
    them; the label's probability is the chance of naming the object right given the box. Measured
    against the earlier rule (the least sure location token's own probability times the label's) in
    docs/output-and-scores.md, "Which box score"."""
    if tokens is None:
        return None
    loc_tokens = tokens.tokens_in([entry.loc_span])
    log_score = tokens.log_probability([entry.span], excluding=[entry.loc_span, entry.seg_span])
    if len(loc_tokens) == len(entry.locs) == LOCS_PER_BOX:
        for token, chosen, tolerance in zip(loc_tokens, entry.locs, location_tolerances(entry.locs)):
            log_score += math.log(max(tokens.location_mass(int(token), chosen, tolerance), 1e-300))
    else:  # not one token per <loc> (no PaliGemma tokenizer does this): their own probabilities
        log_score += float(np.sum(tokens.logprobs[loc_tokens], dtype=np.float64))
    return min(1.0, max(0.0, math.exp(log_score)))


def entry_to_box(
    entry: Entry, classes: dict[str, str], image_wh: tuple[int, int], tokens: TokenLogprobs | None = None
) -> Box:
    """Validate one entry and convert it; raises ValueError saying what is wrong with it.

    An entry without a label takes the requested class when there is only one (PaliGemma 2 mix
    answers `segment cow` with no label, as big_vision's referring-segmentation targets have none);
    with several classes it cannot be named and is refused.

    Args:
        entry: a piece of the answer from `split_entries`.
        classes: normalised label -> requested spelling; the box gets the requested spelling.
        image_wh: original (width, height) in pixels.
        tokens: the answer's token log-probabilities, for the box's `score` (None: no score).
    """
    if len(entry.locs) != LOCS_PER_BOX:
        raise ValueError(f"{len(entry.locs)} location tokens, expected {LOCS_PER_BOX}")
    if any(loc > MAX_LOC for loc in entry.locs):
        raise ValueError(f"location token out of range 0..{MAX_LOC}")
    y_min, x_min, y_max, x_max = entry.locs
    if y_max <= y_min or x_max <= x_min:
        raise ValueError("empty or inverted box")
    if not entry.label and len(classes) != 1:
        raise ValueError(f"missing label, and {len(classes)} classes were requested")
    label = find_class(entry.label, classes) if entry.label else next(iter(classes.values()))
    if label is None:
        raise ValueError(f"unknown label {entry.label!r}")
    x0, y0, x1, y1 = loc_yxyx_1024_to_box_xyxy_px(entry.locs, image_wh)
    return Box(label=label, x_min=x0, y_min=y0, x_max=x1, y_max=y1, score=box_score(entry, tokens))


def parse_detections(
    text: str, classes: tuple[str, ...], image_wh: tuple[int, int], tokens: TokenLogprobs | None = None
) -> tuple[list[Box], list[str]]:
    """Parse a `detect` answer.

    Invalid entries are reported, not repaired: a run of other than 4 locs, a location past 1023,
    an empty or inverted box, an unrequested label, or a missing one when several classes were
    requested (with one, an unlabelled entry takes it). Valid entries are kept either way.
    Segmentation codewords are ignored here (the `segment` task reads them). With `tokens` (the
    log-probabilities of the answer's tokens), every box gets a `score` (see `box_score`), lowered
    where it repeats an earlier box (`repeat_discounts`).

    Returns:
        (boxes, problems): the valid boxes, and one message per discarded entry.
    """
    wanted = normalised_classes(classes)
    boxes: list[Box] = []
    problems: list[str] = []
    for entry in split_entries(text):
        try:
            boxes.append(entry_to_box(entry, wanted, image_wh, tokens))
        except ValueError as err:
            problems.append(describe_entry(err, entry))
    return [discount(box, factor) for box, factor in zip(boxes, repeat_discounts(boxes))], problems


def repeat_discounts(boxes: Sequence[Box]) -> list[float]:
    """Per box, what its score is multiplied by for repeating an earlier box of the same answer: 1 - IoU
    with the earlier box of its label that it overlaps most, where that IoU is at least `REPEAT_IOU`;
    otherwise 1. Each box's own tokens cannot see that it repeats one: the model writes a second box on
    an object it already named as surely as the first (a duplicate, never right under one-to-one
    matching), and two distinct objects of one label rarely overlap that much."""
    factors = [1.0] * len(boxes)
    xywh = [[b.x_min, b.y_min, b.x_max - b.x_min, b.y_max - b.y_min] for b in boxes]
    for later in range(1, len(boxes)):
        earlier = [k for k in range(later) if boxes[k].label == boxes[later].label]
        if earlier:
            overlap = float(np.max(mask_utils.iou([xywh[later]], [xywh[k] for k in earlier], [0] * len(earlier))))
            if overlap >= REPEAT_IOU:
                factors[later] = 1.0 - overlap
    return factors


def discount(item, factor: float):
    """`item` (a Box or Mask) with its score multiplied by `factor` (an unscored one as it is)."""
    if factor == 1.0 or item.score is None:
        return item
    return item.model_copy(update={"score": item.score * factor})
