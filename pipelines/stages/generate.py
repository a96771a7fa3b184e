"""The model stage: a Ray actor holding one engine (transformers or vLLM) that answers each batch's requests.

torch, the engines and the mask decoder are imported where the actor starts, not at the top: the driver
imports this module to build the dataset, and needs none of them (pipelines/model/checkpoint.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import ray

from pipelines.model.generation import Generation, GenerationRequest
from pipelines.parse.segmentation import CODES_PER_MASK, mask_codes
from pipelines.placement import where_this_actor_runs
from pipelines.stages.contract import Rows, StageContract, describe_error
from pipelines.stages.requests import ModelRequest, expand_requests
from pipelines.tasks.base import TaskSpec
from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.columns import pack_mask_logits, pack_token_ends, pack_token_logprobs, pack_token_top
from schemas.job import PromptOptions, VllmSettings
from schemas.rows import Status

if TYPE_CHECKING:
    import torch

OUTPUT_COLUMNS = (
    C.IMAGE_ID, C.SOURCE_URI, C.WIDTH, C.HEIGHT, C.TASK, C.PROMPT, C.RAW_OUTPUT, C.MASK_LOGITS, C.TOKEN_LOGPROBS,
    C.TOKEN_ENDS, C.TOKEN_TOP_BINS, C.TOKEN_TOP_LOGPROBS, C.FINISH_REASON, C.STATUS, C.ERROR
)
CONTRACT = StageContract(
    "generate", reads=(C.IMAGE_ID, C.SOURCE_URI, C.QUESTION, C.DONE_TASKS, C.PIXELS, C.WIDTH, C.HEIGHT, C.ERROR),
    writes=OUTPUT_COLUMNS, rows=Rows.EXPAND, keeps_columns=False)


@dataclass(frozen=True)
class StageOptions:
    """How the model stage runs; none of it changes an answer.

    share_vision: transformers engine: encode each image once per input batch and give the features to
        every task's `generate`, instead of letting each call run the vision tower on its own copy.
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


class _NoModel:
    """`StageOptions.benchmark_without_model`: every request answered at once with an empty text."""

    name = "none"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        return [Generation.unscored("", "stop") for _ in requests]


def load_engine(engine: str, model: str, revision: str | None, device: torch.device, dtype: str, batch_size: int,
                stage_options: StageOptions, max_new_tokens: int, vllm_settings: VllmSettings | None = None,
                quantization: str = "none"):
    """The engine that answers the stage's requests (see pipelines.model.generation); `max_new_tokens` is
    the largest budget of the job's tasks."""
    if stage_options.benchmark_without_model:
        return _NoModel()
    if engine == "vllm":
        from pipelines.model.vllm_engine import VllmEngine  # vLLM is an optional dependency

        return VllmEngine(model, revision, device, dtype, vllm_settings or VllmSettings(), max_new_tokens,
                          fixed_length=stage_options.fixed_length)
    from pipelines.model.hf_engine import TransformersEngine  # noqa: PLC0415

    return TransformersEngine(model, revision, device, dtype, batch_size, share_vision=stage_options.share_vision,
                              fixed_length=stage_options.fixed_length, quantization=quantization)


class GenerateStage:
    """Expands each image into one request per (task, prompt) and has the engine answer them, greedily.

    Reads and writes the columns of `CONTRACT`: one row per (image, task, prompt) with raw_output,
    status and error (`requests.expand_requests` decides which rows pass through without the model).
    The engine gets all of a batch's requests at once: transformers batches them per task, vLLM
    schedules them together. For tasks that decode masks, `mask_logits` holds the decoder's output
    for the answer's codeword sets.
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
        engine: str = "transformers",
        vllm_settings: VllmSettings | None = None,
        quantization: str = "none",
    ):
        import torch  # noqa: PLC0415 - see the module's docstring

        from pipelines.model.mask_decoder import load_mask_decoder  # noqa: PLC0415

        # On a GPU Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU. A node whose GPUs are only declared
        # (Ray's test clusters) runs torch on CPU; the actor's record says which it was.
        self.device = torch.device("cuda" if device == "cuda" and torch.cuda.is_available() else "cpu")
        self.stage_options = stage_options
        if stage_options.torch_threads and self.device.type == "cpu":
            torch.set_num_threads(stage_options.torch_threads)
        self.tasks = [get_task(name) for name in tasks]
        self.options = options
        needs_vae = [task.name for task in self.tasks if task.decodes_masks]
        if needs_vae and not vae:
            raise ValueError(f"tasks {needs_vae} need the mask decoder file (vae)")
        self.engine = load_engine(engine, model, revision, self.device, dtype, batch_size, stage_options,
                                  max(task.budget(options) for task in self.tasks), vllm_settings, quantization)
        without_model = stage_options.benchmark_without_model
        self.mask_decoder = load_mask_decoder(vae, self.device) if needs_vae and not without_model else None
        if actor_log is not None:
            actor_log.record.remote(where_this_actor_runs(self.device.type) | {"engine": self.engine.name})

    def _decode_masks(self, texts: list[str]) -> list[bytes]:
        """All masks of a batch in one decoder call; per answer, its masks packed for transport."""
        from pipelines.model.mask_decoder import decode_masks  # noqa: PLC0415 - imported by __init__ already

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
        requests = [request for task in self.tasks for request in expanded.by_task[task.name]]
        if requests:
            budgets = {task.name: task.budget(self.options) for task in self.tasks}
            pixels = batch[C.PIXELS]
            results = self.engine.generate([GenerationRequest(r.row, r.task, r.prompt, pixels[r.row], budgets[r.task])
                                            for r in requests])
            for task in self.tasks:
                self._add_answers(task, [(r, result) for r, result in zip(requests, results) if r.task == task.name],
                                  rows)
        return rows.columns()

    def _add_answers(self, task: TaskSpec, results: list[tuple[ModelRequest, Generation | BaseException]],
                     rows: _OutputRows) -> None:
        """A task's answers (or failures) into `rows`, with their masks decoded in one call."""
        answered = []
        for request, result in results:  # a request that fails alone is marked; the job goes on
            if isinstance(result, BaseException):
                rows.add(request.row, task.name, request.prompt, "", Status.MODEL_ERROR, describe_error(result))
            else:
                answered.append((request, result))
        if not answered:
            return
        try:
            texts = [generation.text for _, generation in answered]
            needs_masks = task.decodes_masks and self.mask_decoder is not None
            mask_logits = self._decode_masks(texts) if needs_masks else [b""] * len(answered)
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
                  pack_token_ends(scored.token_ends), *pack_token_top(scored.token_top_bins, scored.token_top_logprobs),
                  scored.finish_reason, status.value, error)
        for name, value in zip(OUTPUT_COLUMNS, values):
            self.values[name].append(value)

    def columns(self) -> dict[str, np.ndarray]:
        return {name: np.array(values, dtype=object) for name, values in self.values.items()}
