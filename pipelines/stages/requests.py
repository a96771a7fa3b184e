"""What the model stage does with a batch, decided without the model: which (image, task, prompt)
requests go to the engine, and which rows pass through with a status instead. Pure: no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.tasks.base import TaskSpec
from schemas import columns as C
from schemas.job import PromptOptions
from schemas.rows import Status


@dataclass(frozen=True)
class ModelRequest:
    """One prompt for one image of the batch (`row` is its index there)."""

    row: int
    task: str
    prompt: str


@dataclass(frozen=True)
class PassThroughRow:
    """A row of the stage's output that needs no model: the image failed, or has no prompt."""

    row: int
    task: str
    prompt: str
    status: Status
    error: str


@dataclass(frozen=True)
class BatchRequests:
    """A batch expanded: the requests of each task, in task order, and the rows that pass through."""

    by_task: dict[str, list[ModelRequest]]
    passthrough: list[PassThroughRow]


def expand_requests(batch: dict[str, np.ndarray], tasks: Sequence[TaskSpec], options: PromptOptions) -> BatchRequests:
    """One request per (image, task, prompt), except:
    - a task already in the image's `done_tasks` (written by an earlier attempt) gives nothing;
    - an image that failed to decode gives an `image_error` row per task and prompt;
    - a task with no prompt for the image (e.g. `answer` without a question) gives one `image_error` row.
    So every (image, task, prompt) not done earlier ends as exactly one request or one pass-through row.
    """
    by_task: dict[str, list[ModelRequest]] = {task.name: [] for task in tasks}
    passthrough: list[PassThroughRow] = []
    for task in tasks:
        for row, (question, error, done) in enumerate(zip(batch[C.QUESTION], batch[C.ERROR], batch[C.DONE_TASKS])):
            if task.name in done:
                continue
            prompts = task.build_prompts(options, question or None)
            if not prompts:
                passthrough.append(PassThroughRow(row, task.name, "", Status.IMAGE_ERROR,
                                                  f"no prompt for task {task.name}: the input gives this image no "
                                                  "question"))
            for prompt in prompts:
                if error:
                    passthrough.append(PassThroughRow(row, task.name, prompt, Status.IMAGE_ERROR, error))
                else:
                    by_task[task.name].append(ModelRequest(row, task.name, prompt))
    return BatchRequests(by_task, passthrough)
