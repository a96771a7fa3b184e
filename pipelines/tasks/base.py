"""What a task is: prompt builder, token budget, parser and output column, in one frozen record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipelines.parse.scores import TokenLogprobs
from pipelines.parse.text import clean_text
from schemas.annotations import Box, Mask
from schemas.job import PromptOptions

OutputField = Literal["boxes", "masks", "text", "text_score"]


@dataclass(frozen=True)
class ModelAnswer:
    """What the model stage produced for one request, as the task's parser receives it."""

    raw_output: str
    prompt: str
    image_wh: tuple[int, int]  # original image size, pixels
    mask_logits: np.ndarray | None = None  # (n, 64, 64) decoded masks, tasks with decodes_masks only
    tokens: TokenLogprobs | None = None  # the answer's token log-probabilities, for scores; None: unscored


@dataclass(frozen=True)
class ParseResult:
    """A parsed answer: what was kept, and why anything was not (empty `problems` means clean)."""

    boxes: list[Box] = field(default_factory=list)
    masks: list[Mask] = field(default_factory=list)
    text: str | None = None
    text_score: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the name used on the command line and in the `task` column.
        build_prompts: (options, the image's own question or None) -> prompts for one image;
            one output row per prompt.
        max_new_tokens: options -> the task's default generation budget for one request
            (`budget` is what a run uses: --max-new-tokens may replace it).
        parse: (answer, options) -> ParseResult.
        output_fields: the LabelRow columns this task fills from its ParseResult.
        check_options: options -> a message when the options cannot serve this task, else None.
        decodes_masks: the answers carry `<seg>` codewords that the model stage decodes into
            masks (with the VQ-VAE decoder, which the job then requires) before parsing.
    """

    name: str
    build_prompts: Callable[[PromptOptions, str | None], list[str]]
    max_new_tokens: Callable[[PromptOptions], int]
    parse: Callable[[ModelAnswer, PromptOptions], ParseResult]
    output_fields: tuple[OutputField, ...]
    check_options: Callable[[PromptOptions], str | None] = lambda options: None
    decodes_masks: bool = False

    def budget(self, options: PromptOptions) -> int:
        """The most new tokens one request may generate: --max-new-tokens for this task, else the default."""
        return dict(options.max_new_tokens).get(self.name) or self.max_new_tokens(options)


def parse_text_answer(answer: ModelAnswer, options: PromptOptions) -> ParseResult:
    """Parser shared by the free-text tasks: the cleaned text, or a problem when nothing is left.
    Its score covers every token of the answer (a prompt echo, if any, included)."""
    text = clean_text(answer.raw_output, answer.prompt)
    score = answer.tokens.answer_score() if answer.tokens is not None else None
    return ParseResult(text=text, text_score=score, problems=[] if text else ["empty answer"])
