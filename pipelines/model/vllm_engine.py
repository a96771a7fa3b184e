"""The vLLM engine: every request of a Ray batch handed to one `vllm.LLM` at once.

vLLM's scheduler interleaves the batch's images, tasks and prompts (continuous batching over a paged
KV cache), so a short caption does not wait for a crowded scene's long `detect` answer, as it does in a
static batch. Answers stay greedy within each task's token budget; the chosen tokens' log-probabilities
come back from vLLM and go through the same scoring code as the transformers engine's
(`pipelines.model.generation.generation_from_tokens`).

vLLM is an optional dependency (`pip install -e '.[vllm]'`): this module imports it only inside the
engine, so the driver can check for it and refuse `--engine vllm` before Ray starts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig

from pipelines.model.checkpoint import VLLM_INSTALL_HINT, ModelLoadError, model_source, vllm_available
from pipelines.model.generation import (
    TOP_K,
    Generation,
    GenerationRequest,
    generation_from_tokens,
    location_bins_of_ids,
    run_in_halves,
    stop_and_special_ids,
)
from pipelines.model.load import load_processor, model_dtype
from pipelines.model.vllm_numerics import (
    WHOLE_PROMPT_SETTINGS,
    prompt_attends_bidirectionally_on_cpu,
    transformers_numerics,
)
from schemas.job import VllmSettings

# Room left in the default --max-model-len for the prompt's own tokens (after the image tokens and <bos>):
# task prompts are a few tokens; a per-image question longer than this fails its row (model_error).
PROMPT_TOKENS = 256
# vLLM's own processes on a CPU actor. Its engine core runs in the actor's process instead of one more
# process (each new process imports torch and vLLM again: about 30 s on 2 cores), and its worker binds
# its threads to all of the node's cores, none kept back for the engine core, which waits while the worker
# computes. A GPU actor keeps vLLM's defaults (an engine core process overlapping with the GPU).
CPU_ENVIRONMENT = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
# On a GPU, the fraction of the GPU's memory vLLM may take in all (weights, activations, KV cache). On a
# CPU actor vLLM reads --gpu-memory-utilization as the fraction of the node's RAM its process may hold in
# all, weights included, which no one default fits (0.15 of 24 GiB held the shapes checkpoint but not the
# 3B's 12 GB of fp32 weights); by default its KV cache alone gets this fraction of the RAM instead.
GPU_MEMORY_FRACTION = 0.9
CPU_KV_CACHE_FRACTION = 0.15


def max_model_len(image_tokens: int, max_new_tokens: int) -> int:
    """The longest sequence a request may need: image tokens, <bos>, the prompt, "\\n", the answer."""
    return image_tokens + 1 + PROMPT_TOKENS + 1 + max_new_tokens


class VllmEngine:
    """One `vllm.LLM` per model actor (and GPU), given all of a batch's requests in one `generate` call.

    A call that raises is retried in halves, down to single requests, as the transformers engine's
    batches are: a request vLLM refuses (a prompt longer than --max-model-len) fails alone.
    """

    name = "vllm"

    def __init__(self, model: str, revision: str | None, device: torch.device, dtype: str, settings: VllmSettings,
                 max_new_tokens: int, fixed_length: bool = False):
        if not vllm_available():
            raise ModelLoadError(VLLM_INSTALL_HINT)
        if device.type == "cpu":
            for name, value in CPU_ENVIRONMENT.items():
                os.environ.setdefault(name, value)  # set before vLLM reads them; the user's own values win
            prompt_attends_bidirectionally_on_cpu()  # in this process: vLLM's CPU engine core runs here
        from vllm import LLM  # noqa: PLC0415 - optional dependency

        self.processor = load_processor(model, revision)  # refuses a pickle-only directory, as load_model does
        self.fixed_length = fixed_length
        tokenizer = self.processor.tokenizer
        image_tokens = int(self.processor.image_seq_length)
        if device.type == "cpu" and settings.gpu_memory_utilization is None:
            import psutil  # noqa: PLC0415 - a vLLM dependency

            memory = {"kv_cache_memory_bytes": int(CPU_KV_CACHE_FRACTION * psutil.virtual_memory().total)}
        else:
            memory = {"gpu_memory_utilization": settings.gpu_memory_utilization or GPU_MEMORY_FRACTION}
        self.max_model_len = settings.max_model_len or max_model_len(image_tokens, max_new_tokens)
        try:
            self.llm = LLM(
                model=model_source(model),
                revision=revision,
                dtype=str(model_dtype(dtype, device)).removeprefix("torch."),
                max_model_len=self.max_model_len,
                max_num_seqs=settings.max_num_seqs,
                **memory,
                # CUDA graphs on a GPU; on CPU eager mode starts faster and ran as fast here.
                enforce_eager=device.type != "cuda",
                limit_mm_per_prompt={"image": 1},
                load_format="safetensors",  # never unpickle weights (see pipelines.model.load)
                trust_remote_code=False,
                seed=0,
                max_logprobs=TOP_K,
                hf_overrides=transformers_numerics(),
                **WHOLE_PROMPT_SETTINGS,
            )
        except Exception as err:
            raise ModelLoadError(f"vLLM cannot load {model!r}: {str(err).strip().splitlines()[0]}") from err
        # The same end-of-sequence ids as the transformers engine's (the checkpoint's generation config).
        eos = GenerationConfig.from_pretrained(model_source(model), revision=revision).eos_token_id
        self.stop_ids, self.special_ids = stop_and_special_ids(tokenizer, eos)
        self.bin_of_id = location_bins_of_ids(tokenizer)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation | BaseException]:
        """Per request, its answer or the exception it failed with alone."""
        return run_in_halves(self._generate, list(requests))

    def _generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        from vllm import SamplingParams  # noqa: PLC0415 - optional dependency

        # The bare prompt: vLLM's PaliGemma processor puts the image tokens and <bos> before it and "\n"
        # after it, as the transformers processor does (tests compare the ids).
        prompts = [{"prompt": request.prompt, "multi_modal_data": {"image": Image.fromarray(request.pixels)}}
                   for request in requests]
        params = [SamplingParams(temperature=0.0, max_tokens=request.max_new_tokens,
                                 min_tokens=request.max_new_tokens if self.fixed_length else 0,
                                 # the chosen token's and the top k's log-probabilities at each step
                                 logprobs=TOP_K,
                                 detokenize=False)  # the text is decoded here, as for the other engine
                  for request in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        tokenizer = self.processor.tokenizer
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [step[token].logprob for step, token in zip(completion.logprobs, ids)]
            top_ids, top_logprobs = top_k_arrays(completion.logprobs, TOP_K)
            generations.append(generation_from_tokens(tokenizer, ids, logprobs, self.stop_ids, self.special_ids,
                                                      finish_reason=completion.finish_reason, top_ids=top_ids,
                                                      top_logprobs=top_logprobs, bin_of_id=self.bin_of_id))
        return generations


def top_k_arrays(steps: Sequence[dict], k: int) -> tuple[np.ndarray, np.ndarray]:
    """vLLM's per-step {token id: Logprob} (the top k by rank, plus the chosen token when it ranks
    lower) -> (steps, k) ids and log-probabilities in rank order, padded with id -1 and -inf."""
    ids, logprobs = np.full((len(steps), k), -1, np.int64), np.full((len(steps), k), -np.inf, np.float32)
    for row, step in enumerate(steps):
        ranked = sorted(((entry.rank, token, entry.logprob) for token, entry in step.items()))[:k]
        for column, (_, token, logprob) in enumerate(ranked):
            ids[row, column], logprobs[row, column] = token, logprob
    return ids, logprobs
