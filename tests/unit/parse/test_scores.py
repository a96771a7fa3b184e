"""Scores from token log-probabilities, aligned to entries on golden token sequences."""

import math

import numpy as np
import pytest

from pipelines.parse.detection import parse_detections
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


def test_a_box_scores_its_least_sure_location_times_its_label_not_the_separator_or_other_boxes():
    # Gemma-style tokens: each <loc> is one token, "▁car" one token with its leading space, "▁;" one.
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " car", " ;", " ",
              "<loc0512>", "<loc0512>", "<loc1000>", "<loc1000>", " per", "son"]
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.01, 0.02, 0.4, 0.3, 0.2, 0.1, 0.05, 0.95]
    text, tokens = tokens_of(pieces, probabilities)
    boxes, problems = parse_detections(text, ("car", "person"), (1024, 1024), tokens)
    assert problems == []
    assert [b.label for b in boxes] == ["car", "person"]
    assert boxes[0].score == pytest.approx(0.6 * 0.5)  # weakest of 0.9, 0.8, 0.7, 0.6; label 0.5
    assert boxes[1].score == pytest.approx(0.1 * 0.05 * 0.95)  # weakest 0.1; label "person" in two tokens


def test_a_label_split_from_its_space_still_counts_the_space_token():
    # A character-level tokenizer gives "▁" on its own; it lies inside the entry, so it counts.
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " ", "c", "a", "r"]
    probabilities = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    text, tokens = tokens_of(pieces, probabilities)
    (box,), _ = parse_detections(text, ("car",), (1024, 1024), tokens)
    assert box.score == pytest.approx(0.6 * 0.5 * 0.4 * 0.3 * 0.2)


def test_a_mask_adds_its_codewords_to_the_score_and_its_box_leaves_them_out():
    locs = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>"]
    pieces = locs + [" "] + CODES + [" car"]
    loc_p, space_p, code_p, label_p = [0.9, 0.8, 0.7, 0.6], [0.5], [0.25] * 16, [0.4]
    text, tokens = tokens_of(pieces, loc_p + space_p + code_p + label_p)
    logits = np.ones((1, 64, 64), np.float32)
    boxes, masks, problems = parse_segments(text, ("car",), (64, 64), logits, tokens)
    assert problems == []
    assert boxes[0].score == pytest.approx(min(loc_p) * space_p[0] * label_p[0])
    assert masks[0].score == pytest.approx(geometric_mean(loc_p + space_p + code_p + label_p))


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


def test_the_weakest_token_times_the_rest_and_none_without_weakest_tokens():
    _, tokens = tokens_of(["<loc0001>", "<loc0002>", " a", " b"], [0.5, 0.25, 0.8, 0.5])
    assert tokens.weakest_times_rest([(0, 18)], [(0, 22)]) == pytest.approx(0.25 * 0.8 * 0.5)
    assert tokens.weakest_times_rest([(0, 18)], [(0, 22)], excluding=[(20, 22)]) == pytest.approx(0.25 * 0.8)
    assert tokens.weakest_times_rest([(5, 5)], [(0, 22)]) is None
