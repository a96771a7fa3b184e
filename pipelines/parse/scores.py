"""Confidence scores from the log-probabilities of generated tokens. Pure: no torch, no tokenizer.

The model stage keeps, for every generated token of an answer (special tokens and everything from
the first end-of-sequence token on left out), its natural-log probability under the model, the
character offset in the decoded answer where the token's text ends, and the k most likely tokens
of its step (as `<loc>` bins) with their log-probabilities. A text score is the geometric mean of
the probabilities of the answer's tokens, `exp(mean(log p))`, in [0, 1]. A box's score is the
chance that it is right: per coordinate, the share of the location probability within a tolerance
of the chosen bin (`location_mass`), times the label's probability (pipelines.parse.detection,
docs/output-and-scores.md, "Which box score").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Span = tuple[int, int]  # [start, end) character offsets in the answer text


@dataclass(frozen=True)
class TokenLogprobs:
    """The answer's tokens: where each one's text ends in the answer, and its log-probability.

    Token i covers characters [ends[i-1], ends[i]) (the first starts at 0). A token that adds no
    character of its own (a byte of a multi-byte character that a later token completes) has an
    empty range; it belongs to the span that holds the character at its position.
    """

    ends: np.ndarray  # int, non-decreasing
    logprobs: np.ndarray  # float, <= 0
    # At each token's step, the k most likely tokens: their <loc> bins (-1: another token) and
    # log-probabilities, (tokens, k). None when the engine recorded none.
    top_bins: np.ndarray | None = None
    top_logprobs: np.ndarray | None = None

    def __post_init__(self):
        if len(self.ends) != len(self.logprobs):
            raise ValueError(f"{len(self.ends)} token ends for {len(self.logprobs)} log-probabilities")
        if (self.top_bins is None) != (self.top_logprobs is None) or (
                self.top_bins is not None and not len(self.top_bins) == len(self.top_logprobs) == len(self.ends)):
            raise ValueError("top bins and log-probabilities must both be given, one row per token")
        if len(self.ends) and (np.any(np.diff(self.ends) < 0) or self.ends[0] < 0):
            raise ValueError("token ends must be non-decreasing offsets")

    @classmethod
    def empty(cls) -> TokenLogprobs:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))

    def starts(self) -> np.ndarray:
        return np.concatenate([[0], self.ends[:-1]]).astype(np.int64)

    def tokens_in(self, spans: Sequence[Span]) -> np.ndarray:
        """Indices of the tokens whose characters overlap any of `spans` (empty spans are ignored)."""
        starts, ends = self.starts(), self.ends
        chosen = np.zeros(len(ends), dtype=bool)
        for lo, hi in spans:
            if hi <= lo:
                continue
            overlaps = (starts < hi) & (ends > lo)
            at_position = (starts == ends) & (starts >= lo) & (starts < hi)
            chosen |= overlaps | at_position
        return np.flatnonzero(chosen)

    def _tokens_in_but_not(self, spans: Sequence[Span], excluding: Sequence[Span]) -> np.ndarray:
        """Indices of the tokens overlapping `spans` but none of `excluding`."""
        return np.setdiff1d(self.tokens_in(spans), self.tokens_in(excluding))

    def score_of(self, spans: Sequence[Span], excluding: Sequence[Span] = ()) -> float | None:
        """Geometric mean probability of the tokens overlapping `spans` but none of `excluding`;
        None when there are no such tokens."""
        chosen = self._tokens_in_but_not(spans, excluding)
        return geometric_mean_probability(self.logprobs[chosen])

    def log_probability(self, spans: Sequence[Span], excluding: Sequence[Span] = ()) -> float:
        """The summed log-probability of the tokens overlapping `spans` but none of `excluding` (0: none)."""
        chosen = self._tokens_in_but_not(spans, excluding)
        return float(np.sum(self.logprobs[chosen], dtype=np.float64))

    def location_mass(self, token: int, chosen_bin: int, tolerance: int) -> float:
        """At token `token`'s step, the share of the recorded `<loc>` alternatives' probability that lies
        within `tolerance` bins of `chosen_bin`: the chance the coordinate is within the tolerance, given
        that a coordinate is written. Without recorded location alternatives, the chosen token's own
        probability.

        Renormalised over the recorded location bins because the top k holds only part of a wide
        distribution (the mass of far bins that did not make the top k is unknown, not zero), and
        because mass on other tokens (ending the answer instead of starting another object) is not
        doubt about where this object is."""
        own = math.exp(float(self.logprobs[token]))
        if self.top_bins is None:
            return own
        bins, logprobs = self.top_bins[token], self.top_logprobs[token]
        locations = bins >= 0
        if not locations.any():
            return own
        probabilities = np.exp(logprobs, dtype=np.float64)
        near = locations & (np.abs(bins - chosen_bin) <= tolerance)
        total = float(probabilities[locations].sum())
        mass = float(probabilities[near].sum())
        if not np.any(near & (bins == chosen_bin)):  # the chosen bin ranked below the recorded k
            mass, total = mass + own, total + own  # (not under greedy decoding)
        return min(1.0, mass / total)

    def answer_score(self) -> float | None:
        """Geometric mean probability of every token of the answer; None for an empty answer."""
        return geometric_mean_probability(self.logprobs)


def geometric_mean_probability(logprobs: np.ndarray) -> float | None:
    """exp(mean(log p)), clipped into [0, 1] against rounding; None for no tokens."""
    if len(logprobs) == 0:
        return None
    return min(1.0, max(0.0, math.exp(float(np.mean(logprobs, dtype=np.float64)))))
