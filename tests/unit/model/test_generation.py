"""The engine-independent half of generation: answers from token ids, and failures isolated in halves."""

from typing import NamedTuple

import numpy as np

from pipelines.devtools.tiny_model import build_tiny_tokenizer
from pipelines.model.generation import generation_from_tokens, location_bins_of_ids, run_in_halves, stop_and_special_ids
from pipelines.model.vllm_engine import top_k_arrays


class Logprob(NamedTuple):  # the fields of vLLM's Logprob that the engine reads
    logprob: float
    rank: int

TOKENIZER = build_tiny_tokenizer()
STOPS, SPECIAL = stop_and_special_ids(TOKENIZER, TOKENIZER.eos_token_id)


def test_an_answer_that_ends_is_cut_at_its_end_of_sequence_and_scored_per_token():
    ids = TOKENIZER.encode("ab", add_special_tokens=False) + [TOKENIZER.eos_token_id, TOKENIZER.pad_token_id]
    generation = generation_from_tokens(TOKENIZER, ids, [-0.1, -0.2, -0.3, -9.0], STOPS, SPECIAL)
    assert (generation.text, generation.finish_reason) == ("ab", "stop")
    assert generation.token_ends.tolist() == [1, 2]
    np.testing.assert_allclose(generation.token_logprobs, [-0.1, -0.2])


def test_without_an_end_of_sequence_the_budget_ended_it_unless_the_engine_says_why():
    ids = TOKENIZER.encode("ab", add_special_tokens=False)
    assert generation_from_tokens(TOKENIZER, ids, [-0.1, -0.2], STOPS, SPECIAL).finish_reason == "length"
    # an engine that reports why generation ended (vLLM) is taken at its word
    assert generation_from_tokens(TOKENIZER, ids, [-0.1, -0.2], STOPS, SPECIAL, "stop").finish_reason == "stop"


def test_each_kept_token_keeps_its_steps_alternatives_as_location_bins():
    tokenizer = build_tiny_tokenizer(extra_tokens=[f"<loc{b:04d}>" for b in range(1024)])
    bin_of_id = location_bins_of_ids(tokenizer)
    loc7, loc9, a = tokenizer.convert_tokens_to_ids(["<loc0007>", "<loc0009>", "a"])
    ids = [loc7, a, tokenizer.eos_token_id]
    top_ids = np.array([[loc7, loc9], [a, loc7], [tokenizer.eos_token_id, a]])
    top_logprobs = np.log([[0.6, 0.3], [0.9, 0.05], [0.99, 0.01]])
    generation = generation_from_tokens(tokenizer, ids, [-0.5, -0.1, 0.0], STOPS, SPECIAL, top_ids=top_ids,
                                        top_logprobs=top_logprobs, bin_of_id=bin_of_id)
    assert generation.token_top_bins.tolist() == [[7, 9], [-1, 7]]  # the end of sequence's step is left out
    np.testing.assert_allclose(np.exp(generation.token_top_logprobs), [[0.6, 0.3], [0.9, 0.05]], rtol=1e-6)
    assert bin_of_id[a] == -1 and (bin_of_id >= 0).sum() == 1024


def test_vllms_per_step_log_probabilities_become_rank_ordered_arrays():
    step = {5: Logprob(-0.1, 1), 9: Logprob(-2.0, 2), 4: Logprob(-3.0, 3)}
    ids, logprobs = top_k_arrays([step, {7: Logprob(-0.2, 1)}], k=2)
    assert ids.tolist() == [[5, 9], [7, -1]]
    assert logprobs.tolist() == [[np.float32(-0.1), -2.0], [np.float32(-0.2), -np.inf]]


def test_run_in_halves_isolates_the_items_that_fail_alone():
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    results = run_in_halves(run, ["a", "b", "bad", "c", "d"])
    assert results[:2] == ["A", "B"] and results[3:] == ["C", "D"]
    assert isinstance(results[2], ValueError)
    assert calls == [["a", "b", "bad", "c", "d"], ["a", "b"], ["bad", "c", "d"], ["bad"], ["c", "d"]]


def test_run_in_halves_shrinks_a_batch_until_it_fits():
    seen = []

    def run(items):  # memory for two items at a time
        if len(items) > 2:
            raise MemoryError("out of memory (injected)")
        return list(items)

    assert run_in_halves(run, list(range(7)), seen.append) == list(range(7))
    assert len(seen) == 3 and all(isinstance(err, MemoryError) for err in seen)  # 7 -> 3 + 4 -> 2 + 2
