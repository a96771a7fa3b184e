"""Log-probabilities of the tokens `generate` chooses, recorded during that same call.

`generate(output_scores=True)` would keep every step's logits until the end: batch x steps x
vocabulary floats, 8.4 GB for a `segment` batch of 8 answers of 1024 tokens over PaliGemma's
257,216 tokens. The recorder here keeps one step's log-softmax and, at the next step, reads the
log-probability of the token that was chosen from it, so memory stays at one batch x vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from pipelines.model.generation import TOP_K


class ChosenTokenLogprobs(LogitsProcessor):
    """A logits processor that changes nothing and records, at every step, log p(chosen token) and
    the `top_k` most likely tokens with their log-probabilities.

    `generate` calls it once per step with the sequences so far and that step's scores: the
    model's logits, as no other processor is active in the pipeline's greedy decoding (a test
    compares the result with a teacher-forced forward pass). The token chosen at step t is the last
    id at step t + 1, and the last step's choice is read in `finish` from the returned sequences.
    The alternatives give a box score the probability of the location bins near the chosen one
    (pipelines.parse.scores); their cost is a top-k over the vocabulary per step.
    """

    def __init__(self, top_k: int = TOP_K):
        self.top_k = top_k
        self._steps: list[torch.Tensor] = []
        self._top_ids: list[torch.Tensor] = []
        self._top_logprobs: list[torch.Tensor] = []
        self._previous: torch.Tensor | None = None  # log-softmax of the previous step, (batch, vocab)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._previous is not None:
            self._steps.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        top = self._previous.topk(min(self.top_k, self._previous.shape[-1]), dim=-1)
        self._top_ids.append(top.indices)
        self._top_logprobs.append(top.values)
        return scores

    def finish(self, new_tokens: torch.LongTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For `new_tokens`, the generated part of the sequences: (batch, steps) float32 log-probabilities
        of the chosen tokens, and (batch, steps, k) ids and log-probabilities of each step's top k."""
        if self._previous is not None:
            self._steps.append(self._previous.gather(1, new_tokens[:, -1:]).squeeze(1))
            self._previous = None
        if len(self._steps) != new_tokens.shape[1]:
            raise RuntimeError(f"recorded {len(self._steps)} steps for {new_tokens.shape[1]} generated tokens")
        batch, steps = new_tokens.shape
        if self._steps:
            chosen = torch.stack(self._steps, dim=1).float().cpu().numpy()
            top_ids = torch.stack(self._top_ids, dim=1).cpu().numpy()
            top_logprobs = torch.stack(self._top_logprobs, dim=1).float().cpu().numpy()
        else:
            chosen = np.zeros((batch, steps), np.float32)
            top_ids = np.zeros((batch, 0, self.top_k), np.int64)
            top_logprobs = np.zeros((batch, 0, self.top_k), np.float32)
        self._steps, self._top_ids, self._top_logprobs = [], [], []
        return chosen, top_ids, top_logprobs
