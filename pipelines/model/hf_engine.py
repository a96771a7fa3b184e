"""The transformers engine: static batches of one task each through `PaliGemmaForConditionalGeneration.generate`.

A batch decodes step by step until its longest answer ends (or its budget does), so requests are
batched per task, where budgets and answer lengths are alike. Each image's vision features are
computed once per Ray batch and given to every task's `generate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pipelines.model.generation import (
    Generation,
    GenerationRequest,
    generation_from_tokens,
    location_bins_of_ids,
    run_in_halves,
    stop_and_special_ids,
)
from pipelines.model.load import load_model, load_processor
from pipelines.model.token_scores import ChosenTokenLogprobs


def _release_accelerator_memory(err: BaseException) -> None:
    """After an out-of-memory error, hand cached blocks back before the smaller retry."""
    if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()


def takes_encoded_images(model: torch.nn.Module) -> bool:
    """Whether `generate` takes pre-encoded images (`mm_encoder_outputs`: transformers 5.23 does, 5.17 does
    not). A version without it refuses the keyword, which would fail every request."""
    return "mm_encoder_outputs" in inspect.signature(model.forward).parameters


class TransformersEngine:
    """PaliGemma from `from_pretrained`, greedy `generate` in batches of `batch_size` requests of one task.

    share_vision: encode each image once per call and give the features to every task's `generate`,
        instead of letting each call run the vision tower on its own copy (where transformers can).
    fixed_length: benchmarks only: generate exactly each request's budget (`min_new_tokens`).
    quantization: none, 8bit or 4bit weights (pipelines.model.quantization).
    """

    name = "transformers"

    def __init__(self, model: str, revision: str | None, device: torch.device, dtype: str, batch_size: int,
                 share_vision: bool = True, fixed_length: bool = False, quantization: str = "none"):
        self.device = device
        self.processor = load_processor(model, revision)
        self.model = load_model(model, revision, device, dtype, quantization)
        self.batch_size = batch_size
        self.share_vision = share_vision and takes_encoded_images(self.model)
        self.fixed_length = fixed_length
        self.stop_ids, self.special_ids = stop_and_special_ids(self.processor.tokenizer,
                                                               self.model.generation_config.eos_token_id)
        self.bin_of_id = location_bins_of_ids(self.processor.tokenizer)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation | BaseException]:
        """Per request, its answer or the exception it failed with alone (a failing batch is retried in
        halves); batches of one task, in the order the tasks first appear."""
        features = self._image_features(requests) if self.share_vision else {}
        results: list[Generation | BaseException | None] = [None] * len(requests)
        by_task: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            by_task.setdefault(request.task, []).append(index)
        for indices in by_task.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                answers = run_in_halves(lambda part: self._generate([requests[i] for i in part], features), chunk,
                                        _release_accelerator_memory)
                for index, answer in zip(chunk, answers):
                    results[index] = answer
        return results

    def _image_features(self, requests: Sequence[GenerationRequest]) -> dict[int, torch.Tensor]:
        """Projected vision features per image, one (image tokens, width) tensor each, computed in
        batches of `batch_size`. A batch whose vision pass fails is left out: its requests then go
        through `generate` with pixels, which marks them if it fails again."""
        pixels = {request.image: request.pixels for request in requests}
        images = sorted(pixels)
        features: dict[int, torch.Tensor] = {}
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            try:
                values = self.processor.image_processor([pixels[i] for i in chunk], do_resize=False,
                                                        return_tensors="pt")["pixel_values"]
                with torch.inference_mode():
                    encoded = self.model.model.get_image_features(
                        values.to(self.device, self.model.dtype)).pooler_output
            except Exception:  # noqa: BLE001 - reported per request by the generate path
                continue
            features.update(zip(chunk, encoded))
        return features

    def _generate(self, requests: Sequence[GenerationRequest],
                  features: dict[int, torch.Tensor] | None = None) -> list[Generation]:
        """One `generate` call for requests of one task (one budget)."""
        # "<image>" up front is how the processor wants the image placed; it yields the same ids
        # as the bare prompt and keeps it from warning on every call.
        inputs = self.processor(
            text=["<image>" + request.prompt for request in requests],
            images=[request.pixels for request in requests],
            padding="longest",  # left padding (Gemma's side), only when prompts differ in length
            do_resize=False,  # decode already resized to the model's resolution
            return_tensors="pt",
        )
        inputs.pop("labels", None)  # transformers 5 returns all -100 labels at inference; unused
        # Keep token_type_ids: transformers 5 needs them for PaliGemma's bidirectional prefix.
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        shared = [(features or {}).get(request.image) for request in requests]
        if all(feature is not None for feature in shared):
            # generate's own hook for pre-encoded images: the vision tower is skipped.
            del inputs["pixel_values"]
            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=torch.stack(shared))}
        budget = max(request.max_new_tokens for request in requests)
        fixed = {"min_new_tokens": budget} if self.fixed_length else {}
        recorder = ChosenTokenLogprobs()
        with torch.inference_mode():
            output_ids = self.model.generate(
                **inputs, max_new_tokens=budget, do_sample=False, logits_processor=[recorder], **fixed
            )
        new_tokens = output_ids[:, inputs["input_ids"].shape[1]:]
        logprobs, top_ids, top_logprobs = recorder.finish(new_tokens)
        tokenizer = self.processor.tokenizer
        return [generation_from_tokens(tokenizer, ids, logprobs[row], self.stop_ids, self.special_ids,
                                       top_ids=top_ids[row], top_logprobs=top_logprobs[row], bin_of_id=self.bin_of_id)
                for row, ids in enumerate(new_tokens.tolist())]
