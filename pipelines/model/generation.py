"""What the model stage asks of an engine and what it gets back, the same for every engine.

An engine (`hf_engine.TransformersEngine`, `vllm_engine.VllmEngine`) takes a Ray batch's requests and
returns, per request, a `Generation` or the exception that request failed with alone. The answer's
text, its tokens' character ends and log-probabilities are derived here from the generated token ids,
with one tokenizer and one rule, so both engines' rows are scored by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

TOP_K = 20  # alternatives recorded per step: vLLM's default ceiling on requested log-probabilities


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for one image, greedy within `max_new_tokens`. `image` identifies the image within the
    batch (requests with the same `image` share its pixels, and may share its vision features); `task` is
    the group a static-batching engine batches together."""

    image: int
    task: str
    prompt: str
    pixels: np.ndarray  # (size, size, 3) uint8, already at the model's resolution
    max_new_tokens: int


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text (special tokens removed), per token of that text where the
    token ends in it (characters), its log-probability (see pipelines.model.token_scores) and the
    step's most likely tokens as `<loc>` bins (-1: not a location token) with their log-probabilities,
    and why generation ended ("stop", "length"; "" when nothing was generated)."""

    text: str
    token_ends: np.ndarray
    token_logprobs: np.ndarray
    finish_reason: str = ""
    token_top_bins: np.ndarray = field(default_factory=lambda: np.zeros((0, TOP_K), np.int16))  # (tokens, k)
    token_top_logprobs: np.ndarray = field(default_factory=lambda: np.zeros((0, TOP_K), np.float32))  # (tokens, k)

    @classmethod
    def unscored(cls, text: str, finish_reason: str = "") -> Generation:
        return cls(text, np.zeros(0, np.int32), np.zeros(0, np.float32), finish_reason)


def generation_from_tokens(tokenizer, ids: Sequence[int], logprobs: Sequence[float], stop_ids: Collection[int],
                           special_ids: Collection[int], finish_reason: str | None = None,
                           top_ids: np.ndarray | None = None, top_logprobs: np.ndarray | None = None,
                           bin_of_id: np.ndarray | None = None) -> Generation:
    """The `Generation` of one answer's new token ids (as generated: an end-of-sequence token and any
    padding after it included), each one's log-probability and, per step, the ids and log-probabilities
    of the most likely tokens (`bin_of_id`, from `location_bins_of_ids`, names their `<loc>` bins).
    Its finish reason is the engine's when it gives one, else "stop" when an end-of-sequence token is
    among the ids and "length" when not (the budget ran out first)."""
    ids = [int(token) for token in ids]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    answer, ends, kept = answer_tokens(tokenizer, ids, stop_ids, special_ids)
    finish = finish_reason or ("stop" if set(stop_ids).intersection(ids) else "length")
    # An answer that still differs from the decoded text (not seen) stays unscored rather than scored
    # on the wrong characters.
    if answer != text:
        return Generation.unscored(text, finish)
    chosen = np.asarray(logprobs, np.float32)[kept]
    if top_ids is None or bin_of_id is None:
        return Generation(text, ends, chosen, finish)
    top_ids = np.asarray(top_ids, np.int64)[kept]
    known = (top_ids >= 0) & (top_ids < len(bin_of_id))
    bins = np.where(known, bin_of_id[np.clip(top_ids, 0, len(bin_of_id) - 1)], -1).astype(np.int16)
    return Generation(text, ends, chosen, finish, bins, np.asarray(top_logprobs, np.float32)[kept])


def stop_and_special_ids(tokenizer, eos_token_id: int | list[int] | None) -> tuple[set[int], set[int]]:
    """The ids that end an answer (the generation config's end of sequence), and the special ids
    decoding drops."""
    stops = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id]
    return {int(token) for token in stops if token is not None}, set(tokenizer.all_special_ids)


T = TypeVar("T")
R = TypeVar("R")


def run_in_halves(run: Callable[[Sequence[T]], list[R]], items: Sequence[T],
                  on_failure: Callable[[BaseException], None] = lambda err: None) -> list[R | BaseException]:
    """`run(items)`, one result per item. When it raises, the items are retried in two halves, and
    so on down to single items, so one bad request or a batch too large for the accelerator's memory
    costs only the items that fail alone; each of those gets its exception instead of a result.
    `on_failure` sees every exception (to free memory before the retry)."""
    try:
        return list(run(items))
    except Exception as err:  # noqa: BLE001 - any failure is retried smaller, then reported per item
        on_failure(err)
        if len(items) == 1:
            return [err]
        middle = len(items) // 2
        return run_in_halves(run, items[:middle], on_failure) + run_in_halves(run, items[middle:], on_failure)


def location_bins_of_ids(tokenizer, bins: int = 1024) -> np.ndarray:
    """vocabulary id -> the `<locNNNN>` bin it writes, -1 for every other token."""
    lookup = np.full(len(tokenizer), -1, dtype=np.int16)
    ids = tokenizer.convert_tokens_to_ids([f"<loc{b:04d}>" for b in range(bins)])
    unknown = tokenizer.unk_token_id
    for b, token in enumerate(ids):
        if token is not None and token != unknown and 0 <= token < len(lookup):
            lookup[token] = b
    return lookup


def answer_tokens(
    tokenizer, ids: Sequence[int], stop_ids: Collection[int], special_ids: Collection[int]
) -> tuple[str, np.ndarray, np.ndarray]:
    """The answer's text, and per token of it, where its text ends and its position in `ids`.

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
    return text, ends.reshape(-1), np.asarray(kept, dtype=np.int64)


def _agreed_length(prefix: str, text: str) -> int:
    """How much of `prefix` is the start of `text`. A prefix ending inside a multi-byte character
    decodes its bytes as U+FFFD; that character belongs to the token that completes it."""
    length = min(len(prefix), len(text))
    while length and not text.startswith(prefix[:length]):
        length -= 1
    return length
