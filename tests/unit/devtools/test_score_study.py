"""The score study's earlier rules: golden values, and the pipeline's own rule back in place afterwards."""

import numpy as np
import pytest

from pipelines.devtools.score_study import RULES, earlier_box_score
from pipelines.parse import detection, segmentation
from pipelines.parse.detection import parse_detections
from pipelines.parse.scores import TokenLogprobs


def test_the_earlier_box_rule_is_the_least_sure_location_times_the_label_and_is_undone_after():
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " car"]
    tokens = TokenLogprobs(ends=np.cumsum([len(p) for p in pieces]), logprobs=np.log([0.9, 0.3, 0.8, 0.7, 0.5]))
    text = "".join(pieces)
    current = detection.box_score
    with RULES["earlier"]():
        (box,), _ = parse_detections(text, ("car",), (1024, 1024), tokens)
        assert segmentation.box_score is earlier_box_score
    assert box.score == pytest.approx(0.3 * 0.5)
    assert detection.box_score is current and segmentation.box_score is current
    (box,), _ = parse_detections(text, ("car",), (1024, 1024), tokens)
    assert box.score == pytest.approx(0.9 * 0.3 * 0.8 * 0.7 * 0.5)  # today's, without recorded alternatives


def test_the_shares_rule_is_todays_without_the_repeat_discount():
    pieces = ["<loc0000>", "<loc0000>", "<loc0512>", "<loc0512>", " car", " ; ",
              "<loc0000>", "<loc0000>", "<loc0500>", "<loc0512>", " car"]
    probabilities = [0.9, 0.9, 0.9, 0.9, 0.9, 1.0, 0.9, 0.9, 0.9, 0.9, 0.9]
    tokens = TokenLogprobs(ends=np.cumsum([len(p) for p in pieces]), logprobs=np.log(probabilities))
    text = "".join(pieces)
    with RULES["shares"]():
        _, repeated = parse_detections(text, ("car",), (1024, 1024), tokens)[0]
    assert detection.repeat_discounts([repeated, repeated]) == [1.0, 0.0]  # today's rule back in place
    _, discounted = parse_detections(text, ("car",), (1024, 1024), tokens)[0]
    assert repeated.score == pytest.approx(0.9 ** 5)
    assert discounted.score == pytest.approx(0.9 ** 5 * (1 - 500 / 512))
