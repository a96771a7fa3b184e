"""The model stage: a Ray actor holding PaliGemma, generating in batches of one task each."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import ray
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pipelines.model.load import load_model, load_processor
from pipelines.model.mask_decoder import decode_masks, load_mask_decoder
from pipelines.model.token_scores import ChosenTokenLogprobs, answer_tokens
from pipelines.parse.segmentation import CODES_PER_MASK, mask_codes
from pipelines.placement import where_this_actor_runs
from pipelines.stages.contract import Rows, StageContract, describe_error
from pipelines.stages.requests import ModelRequest, expand_requests, run_in_halves
from pipelines.tasks.base import TaskSpec
from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.columns import pack_mask_logits, pack_token_ends, pack_token_logprobs
from schemas.job import PromptOptions
from schemas.rows import Status

OUTPUT_COLUMNS = (
    C.IMAGE_ID, C.SOURCE_URI, C.WIDTH, C.HEIGHT, C.TASK, C.PROMPT, C.RAW_OUTPUT, C.MASK_LOGITS, C.TOKEN_LOGPROBS,
    C.TOKEN_ENDS, C.FINISH_REASON, C.STATUS, C.ERROR
)
CONTRACT = StageContract(
    "generate", reads=(C.IMAGE_ID, C.SOURCE_URI, C.QUESTION, C.DONE_TASKS, C.PIXELS, C.WIDTH, C.HEIGHT, C.ERROR),
    writes=OUTPUT_COLUMNS, rows=Rows.EXPAND, keeps_columns=False)


def _release_accelerator_memory(err: BaseException) -> None:
    """After an out-of-memory error, hand cached blocks back before the smaller retry."""
    if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class StageOptions:
    """How the model stage runs; none of it changes an answer.

    share_vision: encode each image once per input batch and give the features to every task's
        `generate`, instead of letting each call run the vision tower on its own copy.
    torch_threads: intra-op threads for a CPU actor (Ray starts workers with one).
    fixed_length: benchmarks only: generate exactly each task's token budget
        (`min_new_tokens = max_new_tokens`), so random weights cost what real answers do.
    benchmark_without_model: benchmarks only: load no model and answer every request with an empty
        text that ended by itself, so that the rest of the pipeline (read, decode, label, write) is
        measured alone, as the CPU work a GPU's model stage needs fed.
    """

    share_vision: bool = True
    torch_threads: int | None = None
    fixed_length: bool = False
    benchmark_without_model: bool = False


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text (special tokens removed), per token of that text where the
    token ends in it (characters) and its log-probability (see pipelines.model.token_scores), and
    why generation ended ("stop", "length"; "" when nothing was generated)."""

    text: str
    token_ends: np.ndarray
    token_logprobs: np.ndarray
    finish_reason: str = ""

    @classmethod
    def unscored(cls, text: str, finish_reason: str = "") -> Generation:
        return cls(text, np.zeros(0, np.int32), np.zeros(0, np.float32), finish_reason)


class GenerateStage:
    """Expands each image into one request per (task, prompt) and runs greedy generation.

    Reads and writes the columns of `CONTRACT`: one row per (image, task, prompt) with raw_output,
    status and error (`requests.expand_requests` decides which rows pass through without the model).
    For tasks that decode masks, `mask_logits` holds the decoder's output for the answer's codeword sets.
    """

    def __init__(
        self,
        model: str,
        revision: str | None,
        tasks: list[str],
        options: PromptOptions,
        batch_size: int,
        vae: str | None = None,
        stage_options: StageOptions = StageOptions(),
        dtype: str = "auto",
        device: str = "cuda",
        actor_log: ray.actor.ActorHandle | None = None,
    ):
        # On a GPU Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU. A node whose GPUs are only declared
        # (Ray's test clusters) runs torch on CPU; the actor's record says which it was.
        self.device = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
        self.stage_options = stage_options
        if stage_options.torch_threads and self.device.type == "cpu":
            torch.set_num_threads(stage_options.torch_threads)
        without_model = stage_options.benchmark_without_model
        self.processor = None if without_model else load_processor(model, revision)
        self.model = None if without_model else load_model(model, revision, self.device, dtype)
        self.tasks = [get_task(name) for name in tasks]
        self.options = options
        self.batch_size = batch_size
        needs_vae = [task.name for task in self.tasks if task.decodes_masks]
        if needs_vae and not vae:
            raise ValueError(f"tasks {needs_vae} need the mask decoder file (vae)")
        self.mask_decoder = load_mask_decoder(vae, self.device) if needs_vae and not without_model else None
        if actor_log is not None:
            actor_log.record.remote(where_this_actor_runs(self.device.type))

    def _image_features(self, pixels: np.ndarray, rows: list[int]) -> dict[int, torch.Tensor]:
        """Projected vision features of `rows`, one (image tokens, width) tensor per row, computed
        in batches of `batch_size`. A batch whose vision pass fails is left out: its requests then
        go through `generate` with pixels, which marks them if it fails again."""
        features: dict[int, torch.Tensor] = {}
        processor = self.processor.image_processor
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            try:
                pixel_values = processor([pixels[row] for row in chunk], do_resize=False, return_tensors="pt")
                pixel_values = pixel_values["pixel_values"].to(self.device, self.model.dtype)
                with torch.inference_mode():
                    encoded = self.model.model.get_image_features(pixel_values).pooler_output
            except Exception:  # noqa: BLE001 - reported per request by the generate path
                continue
            features.update(zip(chunk, encoded))
        return features

    def _generate(self, prompts: list[str], images: list[np.ndarray], max_new_tokens: int,
                  image_features: list[torch.Tensor] | None = None) -> list[Generation]:
        # "<image>" up front is how the processor wants the image placed; it yields the same ids
        # as the bare prompt and keeps it from warning on every call.
        inputs = self.processor(
            text=["<image>" + prompt for prompt in prompts],
            images=images,
            padding="longest",  # left padding (Gemma's side), only when prompts differ in length
            do_resize=False,  # decode already resized to the model's resolution
            return_tensors="pt",
        )
        inputs.pop("labels", None)  # transformers 5 returns all -100 labels at inference; unused
        # Keep token_type_ids: transformers 5 needs them for PaliGemma's bidirectional prefix.
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        if image_features is not None:
            # generate's own hook for pre-encoded images: the vision tower is skipped.
            del inputs["pixel_values"]
            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(
                pooler_output=torch.stack(image_features))}
        fixed = {"min_new_tokens": max_new_tokens} if self.stage_options.fixed_length else {}
        recorder = ChosenTokenLogprobs()
        with torch.inference_mode():
            output_ids = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=[recorder], **fixed
            )
        new_tokens = output_ids[:, inputs["input_ids"].shape[1]:]
        logprobs = recorder.finish(new_tokens)
        tokenizer = self.processor.tokenizer
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        eos = self.model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos])
        special_ids = set(tokenizer.all_special_ids)
        generations = []
        for text, ids, row_logprobs in zip(texts, new_tokens.tolist(), logprobs):
            answer, ends, kept = answer_tokens(tokenizer, ids, row_logprobs, stop_ids, special_ids)
            # No end of sequence among the new tokens: the budget ran out first.
            finish = "stop" if stop_ids.intersection(ids) else "length"
            # Tokens after the end of sequence are padding; an answer that still differs from the
            # decoded text (not seen) stays unscored rather than scored on the wrong characters.
            generations.append(Generation(text, ends, kept, finish) if answer == text
                               else Generation.unscored(text, finish))
        return generations

    def _decode_masks(self, texts: list[str]) -> list[bytes]:
        """All masks of a batch in one decoder call; per answer, its masks packed for transport."""
        codes = [mask_codes(text) for text in texts]
        flat = np.array([c for answer in codes for c in answer], dtype=np.int64).reshape(-1, CODES_PER_MASK)
        logits = decode_masks(self.mask_decoder, flat)
        bounds = np.cumsum([0] + [len(answer) for answer in codes])
        return [pack_mask_logits(logits[start:end]) for start, end in itertools.pairwise(bounds)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return CONTRACT.run(self.generate_rows, batch)

    def generate_rows(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One output row per (image, task, prompt) not done earlier: generated, or passed through."""
        rows = _OutputRows(batch)
        expanded = expand_requests(batch, self.tasks, self.options)
        for passed in expanded.passthrough:
            rows.add(passed.row, passed.task, passed.prompt, "", passed.status, passed.error)
        features: dict[int, torch.Tensor] = {}
        if self.model is not None and self.stage_options.share_vision and any(expanded.by_task.values()):
            features = self._image_features(batch[C.PIXELS], sorted({r.row for reqs in expanded.by_task.values()
                                                                      for r in reqs}))
        for task in self.tasks:
            requests = expanded.by_task[task.name]
            for start in range(0, len(requests), self.batch_size):
                self._answer(task, requests[start:start + self.batch_size], batch[C.PIXELS], features, rows)
        return rows.columns()

    def _answer(self, task: TaskSpec, requests: list[ModelRequest], pixels: np.ndarray,
                features: dict[int, torch.Tensor], rows: _OutputRows) -> None:
        """Generate one chunk of a task's requests (retried in halves on failure) into `rows`."""
        if self.model is None:  # benchmark_without_model
            for request in requests:
                rows.add(request.row, task.name, request.prompt, "", Status.OK, "", b"",
                         Generation.unscored("", "stop"))
            return
        budget = task.budget(self.options)

        def generate(part: Sequence[ModelRequest]) -> list[Generation]:
            shared = [features.get(r.row) for r in part]
            return self._generate([r.prompt for r in part], [pixels[r.row] for r in part], budget,
                                  None if any(f is None for f in shared) else shared)

        results = run_in_halves(generate, requests, _release_accelerator_memory)
        answered = []
        for request, result in zip(requests, results):  # a request that fails alone is marked; the job goes on
            if isinstance(result, BaseException):
                rows.add(request.row, task.name, request.prompt, "", Status.MODEL_ERROR, describe_error(result))
            else:
                answered.append((request, result))
        if not answered:
            return
        try:
            texts = [generation.text for _, generation in answered]
            mask_logits = self._decode_masks(texts) if task.decodes_masks else [b""] * len(answered)
        except Exception as err:  # the answers stand; only their masks are lost
            for request, generation in answered:
                rows.add(request.row, task.name, request.prompt, generation.text, Status.MODEL_ERROR,
                         f"mask decoder: {describe_error(err)}", b"", generation)
            return
        for (request, generation), packed in zip(answered, mask_logits):
            rows.add(request.row, task.name, request.prompt, generation.text, Status.OK, "", packed, generation)


class _OutputRows:
    """The model stage's output columns, filled one row at a time from the input batch's images."""

    def __init__(self, batch: dict[str, np.ndarray]):
        self.batch = batch
        self.values: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}

    def add(self, row: int, task: str, prompt: str, raw: str, status: Status, error: str,
            mask_logits: bytes = b"", generation: Generation | None = None) -> None:
        scored = generation if generation is not None else Generation.unscored(raw)
        batch = self.batch
        values = (batch[C.IMAGE_ID][row], batch[C.SOURCE_URI][row], batch[C.WIDTH][row], batch[C.HEIGHT][row],
                  task, prompt, raw, mask_logits, pack_token_logprobs(scored.token_logprobs),
                  pack_token_ends(scored.token_ends), scored.finish_reason, status.value, error)
        for name, value in zip(OUTPUT_COLUMNS, values):
            self.values[name].append(value)

    def columns(self) -> dict[str, np.ndarray]:
        return {name: np.array(values, dtype=object) for name, values in self.values.items()}
