"""The per-request causal flags that give vLLM's CPU attention transformers' bidirectional prompt (the rest of
pipelines.model.vllm_numerics runs inside vLLM: tests/integration/test_vllm_engine.py)."""

import torch

from pipelines.model.vllm_numerics import TRANSFORMERS_NUMERICS, WHOLE_PROMPT_SETTINGS, causal_flags


def test_a_requests_first_pass_is_bidirectional_and_its_answer_tokens_causal():
    # three requests in one step: a prompt of 70 tokens (first pass), one answer token of a sequence now 75
    # long, and another prompt of 66
    starts = torch.tensor([0, 70, 71, 137])
    assert causal_flags(starts, torch.tensor([70, 75, 66]), 3).tolist() == [0, 1, 0]
    # padding past the step's requests is ignored
    assert causal_flags(torch.tensor([0, 70, 70, 70]), torch.tensor([70, 0, 0]), 1).tolist() == [0]


def test_a_step_of_answer_tokens_only_stays_plainly_causal():
    assert causal_flags(torch.tensor([0, 1, 2]), torch.tensor([75, 80]), 2) is None
    # a one-token sequence is causal either way
    assert causal_flags(torch.tensor([0, 1]), torch.tensor([1]), 1) is None


def test_the_engine_settings_match_transformers():
    assert TRANSFORMERS_NUMERICS == {"text_config": {"attn_logit_softcapping": None, "final_logit_softcapping": None}}
    assert WHOLE_PROMPT_SETTINGS == {"enable_chunked_prefill": False, "enable_prefix_caching": False}
