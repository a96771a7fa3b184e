"""The model stage's plan for a batch, without a model: requests per task and the rows that pass through."""

import numpy as np

from pipelines.stages.requests import ModelRequest, PassThroughRow, expand_requests
from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.job import PromptOptions
from schemas.rows import Status

TASKS = [get_task(name) for name in ("detect", "caption", "answer")]
OPTIONS = PromptOptions(classes=("car", "person"), questions=("what is it?",))


def batch(errors, questions=None, done=None):
    n = len(errors)
    return {C.QUESTION: np.array(questions or [""] * n, dtype=object), C.ERROR: np.array(errors, dtype=object),
            C.DONE_TASKS: C.list_column(done or [[]] * n)}


def test_every_image_task_and_prompt_is_one_request():
    expanded = expand_requests(batch(["", ""]), TASKS, OPTIONS)
    assert expanded.passthrough == []
    assert expanded.by_task == {
        "detect": [ModelRequest(0, "detect", "detect car ; person"), ModelRequest(1, "detect", "detect car ; person")],
        "caption": [ModelRequest(0, "caption", "caption en"), ModelRequest(1, "caption", "caption en")],
        "answer": [ModelRequest(0, "answer", "answer en what is it?"),
                   ModelRequest(1, "answer", "answer en what is it?")],
    }


def test_an_image_that_failed_to_decode_passes_through_once_per_prompt():
    expanded = expand_requests(batch(["", "OSError: broken"]), TASKS, OPTIONS)
    assert [r.row for requests in expanded.by_task.values() for r in requests] == [0, 0, 0]
    assert expanded.passthrough == [
        PassThroughRow(1, "detect", "detect car ; person", Status.IMAGE_ERROR, "OSError: broken"),
        PassThroughRow(1, "caption", "caption en", Status.IMAGE_ERROR, "OSError: broken"),
        PassThroughRow(1, "answer", "answer en what is it?", Status.IMAGE_ERROR, "OSError: broken"),
    ]


def test_per_image_questions_add_prompts_and_an_image_without_any_gets_one_error_row():
    tasks = [get_task("answer")]
    options = PromptOptions(per_image_questions=True)
    expanded = expand_requests(batch(["", ""], questions=["how many?", ""]), tasks, options)
    assert expanded.by_task["answer"] == [ModelRequest(0, "answer", "answer en how many?")]
    [passed] = expanded.passthrough
    assert (passed.row, passed.task, passed.prompt, passed.status) == (1, "answer", "", Status.IMAGE_ERROR)
    assert "no prompt for task answer" in passed.error


def test_tasks_written_by_an_earlier_attempt_give_nothing():
    expanded = expand_requests(batch(["", "OSError: broken"], done=[["detect", "answer"], ["caption"]]), TASKS,
                               OPTIONS)
    assert {task: [r.row for r in requests] for task, requests in expanded.by_task.items()} == {
        "detect": [], "caption": [0], "answer": []}
    assert [(p.row, p.task) for p in expanded.passthrough] == [(1, "detect"), (1, "answer")]
