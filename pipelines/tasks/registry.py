"""The explicit list of tasks. Adding a task is one module plus one line here."""

from __future__ import annotations

from pipelines.tasks.answer import ANSWER
from pipelines.tasks.base import TaskSpec
from pipelines.tasks.caption import CAPTION
from pipelines.tasks.detect import DETECT
from pipelines.tasks.ocr import OCR
from pipelines.tasks.question import QUESTION
from pipelines.tasks.segment import SEGMENT
from schemas.job import PromptOptions


def _by_name(*specs: TaskSpec) -> dict[str, TaskSpec]:
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate task names in the registry: {names}")
    return {spec.name: spec for spec in specs}


TASKS: dict[str, TaskSpec] = _by_name(CAPTION, DETECT, SEGMENT, OCR, ANSWER, QUESTION)


def get_task(name: str) -> TaskSpec:
    """The TaskSpec called `name`; an unknown name lists the valid ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}") from None


def check_tasks(names: list[str], options: PromptOptions) -> list[TaskSpec]:
    """Resolve task names and check each one has the options it needs; raises ValueError."""
    specs = [get_task(name) for name in names]
    if stray := sorted({task for task, _ in options.max_new_tokens} - set(names)):
        raise ValueError(f"--max-new-tokens names {', '.join(stray)}, which --tasks does not run")
    for spec in specs:
        if message := spec.check_options(options):
            raise ValueError(message)
    return specs
