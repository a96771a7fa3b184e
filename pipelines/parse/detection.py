"""Detection answers -> boxes in original pixels, with a reason for every entry that was discarded."""

from __future__ import annotations

from pipelines.parse.entries import Entry, describe_entry, find_class, normalised_classes, split_entries
from pipelines.parse.geometry import loc_yxyx_1024_to_box_xyxy_px
from pipelines.parse.scores import TokenLogprobs
from schemas.annotations import Box

LOCS_PER_BOX = 4
MAX_LOC = 1023


def box_score(entry: Entry, tokens: TokenLogprobs | None) -> float | None:
    """A box's confidence: the probability of its least sure location token times the probability
    of the rest of its entry, i.e. the label's tokens and any space before them, less any codewords
    (the ` ; ` separators and the end-of-sequence token are not part of any entry).

    One unsure coordinate is enough to miss the object, and the label's probability is the chance
    of naming it right given the box. On three sets of held-out shapes scenes it ranked right boxes
    (label right and IoU >= 0.5) above wrong ones with AUROC 0.60-0.67 (detect) and 0.64-0.65
    (segment boxes), against 0.54-0.56 and 0.52-0.62 for the geometric mean of all the entry's
    tokens (docs/output-and-scores.md, "Which box score")."""
    if tokens is None:
        return None
    return tokens.weakest_times_rest([entry.loc_span], [entry.span], excluding=[entry.seg_span])


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
    log-probabilities of the answer's tokens), every box gets a `score` (see `box_score`).

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
    return boxes, problems
