"""Confidence scores from the log-probabilities of generated tokens. Pure: no torch, no tokenizer.

The model stage keeps, for every generated token of an answer (special tokens and everything from
the first end-of-sequence token on left out), its natural-log probability under the model and the
character offset in the decoded answer where the token's text ends. A score is the geometric mean
of the probabilities of a set of tokens, `exp(mean(log p))`, in [0, 1], for text (the whole answer)
and masks (every token of the entry); a box's score is its least sure location token's probability
times its label's (`weakest_times_rest`), which ranks wrong boxes below right ones better
(docs/output-and-scores.md, "Which box score").
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

    def __post_init__(self):
        if len(self.ends) != len(self.logprobs):
            raise ValueError(f"{len(self.ends)} token ends for {len(self.logprobs)} log-probabilities")
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

    def score_of(self, spans: Sequence[Span], excluding: Sequence[Span] = ()) -> float | None:
        """Geometric mean probability of the tokens overlapping `spans` but none of `excluding`;
        None when there are no such tokens."""
        chosen = np.setdiff1d(self.tokens_in(spans), self.tokens_in(excluding))
        return geometric_mean_probability(self.logprobs[chosen])

    def weakest_times_rest(self, weakest: Sequence[Span], rest: Sequence[Span],
                           excluding: Sequence[Span] = ()) -> float | None:
        """The lowest probability among the tokens overlapping `weakest`, times the product of the
        probabilities of the tokens overlapping `rest` but neither `weakest` nor `excluding`; None
        when no token overlaps `weakest`."""
        chosen = self.tokens_in(weakest)
        if len(chosen) == 0:
            return None
        others = np.setdiff1d(self.tokens_in(rest), np.union1d(chosen, self.tokens_in(excluding)))
        log_score = float(np.min(self.logprobs[chosen])) + float(np.sum(self.logprobs[others], dtype=np.float64))
        return min(1.0, max(0.0, math.exp(log_score)))

    def answer_score(self) -> float | None:
        """Geometric mean probability of every token of the answer; None for an empty answer."""
        return geometric_mean_probability(self.logprobs)


def geometric_mean_probability(logprobs: np.ndarray) -> float | None:
    """exp(mean(log p)), clipped into [0, 1] against rounding; None for no tokens."""
    if len(logprobs) == 0:
        return None
    return min(1.0, max(0.0, math.exp(float(np.mean(logprobs, dtype=np.float64)))))
