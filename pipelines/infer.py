"""The model stage: a Ray actor holding PaliGemma, generating in batches of one task each."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pipelines.decode import describe_error
from pipelines.mask_decoder import decode_masks, load_mask_decoder
from pipelines.model import load_model, load_processor
from pipelines.parse.segmentation import CODES_PER_MASK, mask_codes
from pipelines.tasks.registry import get_task
from pipelines.token_scores import ChosenTokenLogprobs, answer_tokens
from schemas import columns as C
from schemas.columns import pack_mask_logits, pack_token_ends, pack_token_logprobs
from schemas.job import PromptOptions
from schemas.rows import Status

OUTPUT_COLUMNS = (
    C.IMAGE_ID, C.SOURCE_URI, C.WIDTH, C.HEIGHT, C.TASK, C.PROMPT, C.RAW_OUTPUT, C.MASK_LOGITS, C.TOKEN_LOGPROBS,
    C.TOKEN_ENDS, C.STATUS, C.ERROR
)


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


def _release_accelerator_memory(err: BaseException) -> None:
    """After an out-of-memory error, hand cached blocks back before the smaller retry."""
    if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class _Request:
    row: int  # index of the image in the input batch
    prompt: str


@dataclass(frozen=True)
class StageOptions:
    """How the model stage runs; none of it changes an answer.

    share_vision: encode each image once per input batch and give the features to every task's
        `generate`, instead of letting each call run the vision tower on its own copy.
    torch_threads: intra-op threads for a CPU actor (Ray starts workers with one).
    fixed_length: benchmarks only: generate exactly each task's token budget
        (`min_new_tokens = max_new_tokens`), so random weights cost what real answers do.
    """

    share_vision: bool = True
    torch_threads: int | None = None
    fixed_length: bool = False


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text (special tokens removed) and, per token of that text, where
    the token ends in it (characters) and its log-probability (see pipelines.token_scores)."""

    text: str
    token_ends: np.ndarray
    token_logprobs: np.ndarray

    @classmethod
    def unscored(cls, text: str) -> Generation:
        return cls(text, np.zeros(0, np.int32), np.zeros(0, np.float32))


class GenerateStage:
    """Expands each image into one request per (task, prompt) and runs greedy generation.

    Input columns: image_id, source_uri, question, done_tasks, pixels, width, height, error (from decode).
    Output: one row per (image, task, prompt) with raw_output, status and error; rows whose image
    failed to decode pass through as `image_error` without touching the model. For tasks that
    decode masks, `mask_logits` holds the decoder's output for the answer's codeword sets.
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
    ):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.stage_options = stage_options
        if stage_options.torch_threads and self.device.type == "cpu":
            torch.set_num_threads(stage_options.torch_threads)
        self.processor = load_processor(model, revision)
        self.model = load_model(model, revision, self.device)
        self.tasks = [get_task(name) for name in tasks]
        self.options = options
        self.batch_size = batch_size
        needs_vae = [task.name for task in self.tasks if task.decodes_masks]
        if needs_vae and not vae:
            raise ValueError(f"tasks {needs_vae} need the mask decoder file (vae)")
        self.mask_decoder = load_mask_decoder(vae, self.device) if needs_vae else None

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
            # Tokens after the end of sequence are padding; an answer that still differs from the
            # decoded text (not seen) stays unscored rather than scored on the wrong characters.
            generations.append(Generation(text, ends, kept) if answer == text else Generation.unscored(text))
        return generations

    def _decode_masks(self, texts: list[str]) -> list[bytes]:
        """All masks of a batch in one decoder call; per answer, its masks packed for transport."""
        codes = [mask_codes(text) for text in texts]
        flat = np.array([c for answer in codes for c in answer], dtype=np.int64).reshape(-1, CODES_PER_MASK)
        logits = decode_masks(self.mask_decoder, flat)
        bounds = np.cumsum([0] + [len(answer) for answer in codes])
        return [pack_mask_logits(logits[start:end]) for start, end in itertools.pairwise(bounds)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {name: [] for name in OUTPUT_COLUMNS}

        def emit(row: int, task: str, prompt: str, raw: str, status: Status, error: str,
                 mask_logits: bytes = b"", generation: Generation | None = None) -> None:
            scored = generation if generation is not None else Generation.unscored(raw)
            values = (batch[C.IMAGE_ID][row], batch[C.SOURCE_URI][row], batch[C.WIDTH][row],
                      batch[C.HEIGHT][row], task, prompt, raw, mask_logits,
                      pack_token_logprobs(scored.token_logprobs), pack_token_ends(scored.token_ends),
                      status.value, error)
            for name, value in zip(OUTPUT_COLUMNS, values):
                out[name].append(value)

        features: dict[int, torch.Tensor] = {}
        if self.stage_options.share_vision:
            valid = [row for row, error in enumerate(batch[C.ERROR]) if not error]
            features = self._image_features(batch[C.PIXELS], valid)
        for task in self.tasks:
            requests: list[_Request] = []
            for row, question in enumerate(batch[C.QUESTION]):
                if task.name in batch[C.DONE_TASKS][row].split(","):
                    continue  # written by an earlier attempt of this run
                prompts = task.build_prompts(self.options, question or None)
                if not prompts:  # e.g. answer with no question for this image: still one row
                    emit(row, task.name, "", "", Status.IMAGE_ERROR, f"no prompt for task {task.name}: "
                         "the input gives this image no question")
                for prompt in prompts:
                    if batch[C.ERROR][row]:
                        emit(row, task.name, prompt, "", Status.IMAGE_ERROR, batch[C.ERROR][row])
                    else:
                        requests.append(_Request(row, prompt))
            budget = task.max_new_tokens(self.options)
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start:start + self.batch_size]

                def generate(part: Sequence[_Request]) -> list[Generation]:
                    shared = [features.get(r.row) for r in part]
                    return self._generate([r.prompt for r in part], [batch[C.PIXELS][r.row] for r in part], budget,
                                          None if any(f is None for f in shared) else shared)

                results = run_in_halves(generate, chunk, _release_accelerator_memory)
                for r, result in zip(chunk, results):  # a request that fails alone is marked; the job goes on
                    if isinstance(result, BaseException):
                        emit(r.row, task.name, r.prompt, "", Status.MODEL_ERROR, describe_error(result))
                answered = [(r, result) for r, result in zip(chunk, results) if not isinstance(result, BaseException)]
                if not answered:
                    continue
                chunk, generations = (list(side) for side in zip(*answered))
                texts = [generation.text for generation in generations]
                try:
                    mask_logits = self._decode_masks(texts) if task.decodes_masks else [b""] * len(texts)
                except Exception as err:  # the answers stand; only their masks are lost
                    reason = f"mask decoder: {describe_error(err)}"
                    for r, text in zip(chunk, texts):
                        emit(r.row, task.name, r.prompt, text, Status.MODEL_ERROR, reason)
                    continue
                for r, generation, packed in zip(chunk, generations, mask_logits):
                    emit(r.row, task.name, r.prompt, generation.text, Status.OK, "", packed, generation)
        return {name: np.array(values, dtype=object) for name, values in out.items()}
