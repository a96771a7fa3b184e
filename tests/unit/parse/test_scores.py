"""Scores from token log-probabilities, aligned to entries on golden token sequences."""

import math

import numpy as np
import pytest

from pipelines.parse.detection import location_tolerances, parse_detections
from pipelines.parse.entries import split_entries
from pipelines.parse.scores import TokenLogprobs, geometric_mean_probability
from pipelines.parse.segmentation import parse_segments

CODES = [f"<seg{c:03d}>" for c in range(16)]


def tokens_of(pieces: list[str], probabilities: list[float]) -> tuple[str, TokenLogprobs]:
    """An answer made of token texts, and their log-probabilities."""
    ends = np.cumsum([len(piece) for piece in pieces])
    return "".join(pieces), TokenLogprobs(ends=ends, logprobs=np.log(probabilities))


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def test_entries_know_where_they_and_their_codewords_are():
    text = " <loc0001><loc0002><loc0003><loc0004> car ; <loc0001><loc0002><loc0003><loc0004> " + "".join(CODES) + " b"
    first, second = split_entries(text)
    assert text[slice(*first.span)] == "<loc0001><loc0002><loc0003><loc0004> car"
    assert first.seg_span[0] == first.seg_span[1]
    assert text[slice(*first.loc_span)] == text[slice(*second.loc_span)] == "<loc0001><loc0002><loc0003><loc0004>"
    assert text[slice(*second.span)] == "<loc0001><loc0002><loc0003><loc0004> " + "".join(CODES) + " b"
    assert text[slice(*second.seg_span)] == "".join(CODES)


def with_top(tokens: TokenLogprobs, alternatives: dict[int, list[tuple[int, float]]], k: int = 4) -> TokenLogprobs:
    """`tokens` with recorded top-k alternatives: token index -> [(bin or -1, probability)], the rest
    of each row empty (-1, log 0)."""
    bins = np.full((len(tokens.ends), k), -1)
    logprobs = np.full((len(tokens.ends), k), -np.inf)
    for token, pairs in alternatives.items():
        for column, (bin_, probability) in enumerate(pairs):
            bins[token, column], logprobs[token, column] = bin_, math.log(probability)
    return TokenLogprobs(tokens.ends, tokens.logprobs, bins, logprobs)


def test_a_box_scores_the_mass_near_each_chosen_location_times_its_label_not_the_separator_or_other_boxes():
    # Gemma-style tokens: each <loc> is one token, "▁car" one token with its leading space, "▁;" one.
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " car", " ;", " ",
              "<loc0512>", "<loc0512>", "<loc1000>", "<loc1000>", " per", "son"]
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.01, 0.02, 0.4, 0.3, 0.2, 0.1, 0.05, 0.95]
    text, plain = tokens_of(pieces, probabilities)
    # First box 512 bins a side: within 64 bins counts. Second: 488 a side, 61 bins.
    tokens = with_top(plain, {
        0: [(0, 0.9), (64, 0.05), (65, 0.04)],  # 0.95 of 0.99 within 64 bins of 0; bin 65 is not
        2: [(512, 0.7), (448, 0.1), (-1, 0.1)],  # a non-location token is in neither part: 0.8 of 0.8
        3: [(512, 0.6), (600, 0.3)],  # 88 bins away: 0.6 of 0.9
        9: [(1000, 0.2), (939, 0.3), (1023, 0.4), (938, 0.05)],  # 0.9 of 0.95 within 61 bins; 938 is not
    })
    boxes, problems = parse_detections(text, ("car", "person"), (1024, 1024), tokens)
    assert problems == []
    assert [b.label for b in boxes] == ["car", "person"]
    # token 1 has no alternatives recorded: its own probability
    assert boxes[0].score == pytest.approx(0.95 / 0.99 * 0.8 * 1.0 * 0.6 / 0.9 * 0.5)
    assert boxes[1].score == pytest.approx(0.4 * 0.3 * 0.9 / 0.95 * 0.1 * 0.05 * 0.95)  # label "person": two tokens


def test_mass_spread_over_neighbouring_bins_scores_high_and_mass_far_away_low():
    pieces = ["<loc0100>", "<loc0100>", "<loc0300>", "<loc0300>", " car"]
    text, plain = tokens_of(pieces, [0.2, 0.2, 0.2, 0.2, 1.0])
    near = with_top(plain, {i: [(b, 0.2), (b - 10, 0.2), (b + 10, 0.2), (b + 20, 0.2)]
                            for i, b in enumerate([100, 100, 300, 300])})
    far = with_top(plain, {i: [(b, 0.2), (b + 200, 0.2), (b + 150, 0.2), (b + 100, 0.2)]
                           for i, b in enumerate([100, 100, 300, 300])})
    (spread,), _ = parse_detections(text, ("car",), (1024, 1024), near)
    (scattered,), _ = parse_detections(text, ("car",), (1024, 1024), far)
    (unrecorded,), _ = parse_detections(text, ("car",), (1024, 1024), plain)
    assert spread.score == pytest.approx(1.0)  # all the recorded location mass (0.8) is near
    assert scattered.score == pytest.approx(0.25 ** 4)  # a quarter of it is
    assert unrecorded.score == pytest.approx(0.2 ** 4)  # no alternatives: the chosen bins' own


def test_tolerances_are_an_eighth_of_the_side_and_at_least_one_bin():
    assert location_tolerances((0, 0, 512, 80)) == (64, 10, 64, 10)
    assert location_tolerances((10, 10, 13, 12)) == (1, 1, 1, 1)


def test_a_label_split_from_its_space_still_counts_the_space_token():
    # A character-level tokenizer gives "▁" on its own; it lies inside the entry, so it counts.
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " ", "c", "a", "r"]
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    text, tokens = tokens_of(pieces, probabilities)
    (box,), _ = parse_detections(text, ("car",), (1024, 1024), tokens)
    assert box.score == pytest.approx(0.9 * 0.8 * 0.7 * 0.6 * 0.5 * 0.4 * 0.3 * 0.2)


def test_a_mask_scores_its_box_times_its_codewords_and_its_box_leaves_them_out():
    locs = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>"]
    pieces = locs + [" "] + CODES + [" car"]
    loc_p, space_p, code_p, label_p = [0.9, 0.8, 0.7, 0.6], [0.5], [0.25] * 16, [0.4]
    text, tokens = tokens_of(pieces, loc_p + space_p + code_p + label_p)
    tokens = with_top(tokens, {0: [(0, 0.9), (3, 0.05), (500, 0.05)]})
    logits = np.ones((1, 64, 64), np.float32)
    boxes, masks, problems = parse_segments(text, ("car",), (64, 64), logits, tokens)
    assert problems == []
    box = 0.95 * 0.8 * 0.7 * 0.6 * space_p[0] * label_p[0]  # 0.95 of the first coordinate's 1.0 is near
    assert boxes[0].score == pytest.approx(box)
    assert masks[0].score == pytest.approx(box * 0.25)


def test_a_character_made_of_several_byte_tokens_belongs_to_its_span():
    # "é" decoded from two byte tokens: the first adds no character of its own (empty range).
    tokens = TokenLogprobs(ends=np.array([2, 2, 3, 4]), logprobs=np.log([0.5, 0.1, 0.2, 0.3]))
    assert list(tokens.tokens_in([(2, 3)])) == [1, 2]
    assert list(tokens.tokens_in([(0, 2)])) == [0]
    assert tokens.score_of([(0, 4)], excluding=[(3, 4)]) == pytest.approx(geometric_mean([0.5, 0.1, 0.2]))


def test_text_scores_cover_the_whole_answer_and_nothing_is_none():
    _, tokens = tokens_of(["a", " red", " circle"], [0.5, 0.25, 1.0])
    assert tokens.answer_score() == pytest.approx(0.5)
    assert TokenLogprobs.empty().answer_score() is None
    assert geometric_mean_probability(np.array([0.0, 1e-9])) == 1.0  # rounding above log 1 is clipped


def test_without_token_log_probabilities_boxes_are_unscored():
    boxes, _ = parse_detections("<loc0000><loc0000><loc0512><loc0512> car", ("car",), (10, 10))
    assert boxes[0].score is None


def test_inconsistent_token_offsets_are_refused():
    with pytest.raises(ValueError, match="non-decreasing"):
        TokenLogprobs(ends=np.array([3, 2]), logprobs=np.zeros(2))
    with pytest.raises(ValueError, match="2 token ends for 1"):
        TokenLogprobs(ends=np.array([1, 2]), logprobs=np.zeros(1))


def test_the_summed_log_probability_of_spans_less_exclusions():
    _, tokens = tokens_of(["<loc0001>", "<loc0002>", " a", " b"], [0.5, 0.25, 0.8, 0.5])
    assert tokens.log_probability([(0, 22)], excluding=[(20, 22)]) == pytest.approx(math.log(0.5 * 0.25 * 0.8))
    assert tokens.log_probability([(5, 5)]) == 0.0


def test_top_alternatives_must_come_as_a_pair_one_row_per_token():
    with pytest.raises(ValueError, match="one row per token"):
        TokenLogprobs(ends=np.array([1, 2]), logprobs=np.zeros(2), top_bins=np.zeros((1, 3)),
                      top_logprobs=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="both"):
        TokenLogprobs(ends=np.array([1]), logprobs=np.zeros(1), top_bins=np.zeros((1, 3)))


def test_a_box_repeating_an_earlier_one_of_its_label_scores_1_minus_their_iou_and_others_do_not():
    """Written as surely as the first, a second box on the same object is scored as the chance it is another one."""
    entries = [("<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " car"),   # the first
               ("<loc0000>", "<loc0000>", "<loc0512>", "<loc0480>", " car"),   # IoU 480/512 with it: repeats it
               ("<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " bus"),   # same place, other label
               ("<loc0000>", "<loc0256>", "<loc0512>", "<loc0768>", " car")]   # IoU 1/3 with the first
    pieces = [piece for n, entry in enumerate(entries) for piece in ((" ; ",) if n else ()) + entry]
    text, tokens = tokens_of(pieces, [0.9] * len(pieces))
    boxes, problems = parse_detections(text, ("car", "bus"), (1024, 1024), tokens)
    assert problems == [] and len(boxes) == 4
    assert [box.score for box in boxes] == pytest.approx([0.9 ** 5, 0.9 ** 5 * (1 - 480 / 512), 0.9 ** 5, 0.9 ** 5])
    # in a segment answer the repeated box's mask is discounted alike
    seg_pieces = [piece for n, entry in enumerate(entries[:2]) for piece in
                  ((" ; ",) if n else ()) + entry[:4] + (" ",) + tuple(CODES) + entry[4:]]
    text, tokens = tokens_of(seg_pieces, [0.9] * len(seg_pieces))
    boxes, masks, problems = parse_segments(text, ("car",), (64, 64), np.ones((2, 64, 64), np.float32), tokens)
    assert problems == [] and len(masks) == 2
    assert boxes[1].score == pytest.approx(boxes[0].score * (1 - 480 / 512))
    assert masks[1].score == pytest.approx(masks[0].score * (1 - 480 / 512))
