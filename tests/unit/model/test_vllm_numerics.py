"""The per-request causal flags that give vLLM's CPU attention transformers' bidirectional prompt (the rest of
pipelines.model.vllm_numerics runs inside vLLM: tests/integration/test_vllm_engine.py)."""

import torch

from pipelines.model.load import load_model, load_processor
from pipelines.model.vllm_numerics import WHOLE_PROMPT_SETTINGS, causal_flags, transformers_numerics
from tests.conftest import SHAPES_MODEL


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


def test_vllm_turns_off_exactly_the_soft_caps_the_installed_transformers_skips():
    """Against what transformers does with the shapes checkpoint (both caps set in its config): the attention
    it picks, and whether the logits it returns are the head's output capped at 30."""
    model = load_model(str(SHAPES_MODEL), None, torch.device("cpu"), "float32")
    processor = load_processor(str(SHAPES_MODEL))
    inputs = processor(text=["<image>caption en"], images=[torch.zeros(3, 112, 112)], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    head = model.lm_head(out.hidden_states[-1])
    capped = not torch.allclose(out.logits, head, atol=1e-4)
    assert capped == torch.allclose(out.logits, 30 * torch.tanh(head / 30), atol=1e-4)
    skipped = transformers_numerics().get("text_config", {})
    assert ("final_logit_softcapping" in skipped) == (not capped)
    assert ("attn_logit_softcapping" in skipped) == (model.config.text_config._attn_implementation == "sdpa")


def test_prompts_run_whole_and_unshared():
    assert WHOLE_PROMPT_SETTINGS == {"enable_chunked_prefill": False, "enable_prefix_caching": False}
