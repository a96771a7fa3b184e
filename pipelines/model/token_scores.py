"""Log-probabilities of the tokens `generate` chooses, recorded during that same call.

`generate(output_scores=True)` would keep every step's logits until the end: batch x steps x
vocabulary floats, 8.4 GB for a `segment` batch of 8 answers of 1024 tokens over PaliGemma's
257,216 tokens. The recorder here keeps one step's log-softmax and, at the next step, reads the
log-probability of the token that was chosen from it, so memory stays at one batch x vocabulary.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
from transformers import LogitsProcessor


class ChosenTokenLogprobs(LogitsProcessor):
    """A logits processor that changes nothing and records log p(chosen token) at every step.

    `generate` calls it once per step with the sequences so far and that step's scores: the
    model's logits, as no other processor is active in the pipeline's greedy decoding (a test
    compares the result with a teacher-forced forward pass). The token chosen at step t is the last
    id at step t + 1, and the last step's choice is read in `finish` from the returned sequences.
    """

    def __init__(self):
        self._steps: list[torch.Tensor] = []
        self._previous: torch.Tensor | None = None  # log-softmax of the previous step, (batch, vocab)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._previous is not None:
            self._steps.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.LongTensor) -> np.ndarray:
        """(batch, steps) float32 log-probabilities of `new_tokens`, the generated part of the sequences."""
        if self._previous is not None:
            self._steps.append(self._previous.gather(1, new_tokens[:, -1:]).squeeze(1))
            self._previous = None
        if len(self._steps) != new_tokens.shape[1]:
            raise RuntimeError(f"recorded {len(self._steps)} steps for {new_tokens.shape[1]} generated tokens")
        steps = torch.stack(self._steps, dim=1) if self._steps else torch.zeros(new_tokens.shape)
        self._steps = []
        return steps.float().cpu().numpy()


def answer_tokens(
    tokenizer, ids: Sequence[int], logprobs: np.ndarray, stop_ids: Collection[int], special_ids: Collection[int]
) -> tuple[str, np.ndarray, np.ndarray]:
    """The answer's text, and per token of it, where its text ends and its log-probability.

    Tokens from the first `stop_ids` token on (end of sequence, then padding) and special tokens
    (which decoding drops) are left out. Each kept token's end offset is the length of the text
    decoded so far: summed single-token decodes when they add up to the whole text (the usual case),
    else decoded prefixes, which handle characters built from several byte tokens.
    """
    kept = []
    for position, token in enumerate(ids):
        if token in stop_ids:
            break
        if token not in special_ids:
            kept.append(position)
    kept_ids = [int(ids[position]) for position in kept]
    text = tokenizer.decode(kept_ids, skip_special_tokens=True)
    pieces = tokenizer.batch_decode([[token] for token in kept_ids], skip_special_tokens=True)
    if "".join(pieces) == text:
        ends = np.cumsum([len(piece) for piece in pieces], dtype=np.int64)
    else:
        prefixes = tokenizer.batch_decode([kept_ids[:n + 1] for n in range(len(kept_ids))], skip_special_tokens=True)
        ends = np.maximum.accumulate([0] + [_agreed_length(prefix, text) for prefix in prefixes])[1:].astype(np.int64)
    return text, ends.reshape(-1), np.asarray(logprobs, dtype=np.float32)[kept]


def _agreed_length(prefix: str, text: str) -> int:
    """How much of `prefix` is the start of `text`. A prefix ending inside a multi-byte character
    decodes its bytes as U+FFFD; that character belongs to the token that completes it."""
    length = min(len(prefix), len(text))
    while length and not text.startswith(prefix[:length]):
        length -= 1
    return length
