"""The model stage's plan for a batch, without a model: requests per task and the rows that pass through."""

import numpy as np

from pipelines.stages.requests import ModelRequest, PassThroughRow, expand_requests, run_in_halves
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


def test_run_in_halves_isolates_the_items_that_fail_alone():
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    results = run_in_halves(run, ["a", "b", "bad", "c", "d"])
    assert results[:2] == ["A", "B"] and results[3:] == ["C", "D"]
    assert isinstance(results[2], ValueError)
    assert calls == [["a", "b", "bad", "c", "d"], ["a", "b"], ["bad", "c", "d"], ["bad"], ["c", "d"]]


def test_run_in_halves_shrinks_a_batch_until_it_fits():
    seen = []

    def run(items):  # memory for two items at a time
        if len(items) > 2:
            raise MemoryError("out of memory (injected)")
        return list(items)

    assert run_in_halves(run, list(range(7)), seen.append) == list(range(7))
    assert len(seen) == 3 and all(isinstance(err, MemoryError) for err in seen)  # 7 -> 3 + 4 -> 2 + 2
