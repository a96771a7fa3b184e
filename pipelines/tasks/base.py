"""What a task is: prompt builder, token budget, parser and output column, in one frozen record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pipelines.parse.text import clean_text
from schemas.annotations import Box
from schemas.job import PromptOptions


@dataclass(frozen=True)
class ParseResult:
    """A parsed answer: what was kept, and why anything was not (empty `problems` means clean)."""

    boxes: list[Box] = field(default_factory=list)
    text: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the name used on the command line and in the `task` column.
        build_prompts: (options, the image's own question or None) -> prompts for one image;
            one output row per prompt.
        max_new_tokens: options -> generation budget for one request.
        parse: (raw_output, prompt, image_wh, options) -> ParseResult.
        output_field: the LabelRow column this task fills.
        check_options: options -> a message when the options cannot serve this task, else None.
    """

    name: str
    build_prompts: Callable[[PromptOptions, str | None], list[str]]
    max_new_tokens: Callable[[PromptOptions], int]
    parse: Callable[[str, str, tuple[int, int], PromptOptions], ParseResult]
    output_field: Literal["boxes", "text"]
    check_options: Callable[[PromptOptions], str | None] = lambda options: None


def parse_text_answer(raw_output: str, prompt: str, image_wh: tuple[int, int], options: PromptOptions) -> ParseResult:
    """Parser shared by the free-text tasks: the cleaned text, or a problem when nothing is left."""
    text = clean_text(raw_output, prompt)
    return ParseResult(text=text, problems=[] if text else ["empty answer"])
