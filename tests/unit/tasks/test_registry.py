"""Prompt building, token budgets and option checks per task."""

import pytest

from pipelines.tasks.base import ModelAnswer, TaskSpec
from pipelines.tasks.registry import TASKS, _by_name, check_tasks, get_task
from schemas.job import PromptOptions


@pytest.mark.parametrize(
    "task, options, question, prompts",
    [
        ("caption", PromptOptions(), None, ["caption en"]),
        ("caption", PromptOptions(caption_style="describe", lang="de"), None, ["describe de"]),
        ("caption", PromptOptions(caption_style="cap", lang="fr"), None, ["cap fr"]),
        ("detect", PromptOptions(classes=("car",)), None, ["detect car"]),
        ("detect", PromptOptions(classes=("car", "traffic light")), None, ["detect car ; traffic light"]),
        ("segment", PromptOptions(classes=("car", "traffic light")), None, ["segment car ; traffic light"]),
        ("ocr", PromptOptions(), None, ["ocr"]),
        ("answer", PromptOptions(questions=("what colour?", "how many?")), None,
         ["answer en what colour?", "answer en how many?"]),
        # a per-image question from the input joins the command-line ones
        ("answer", PromptOptions(questions=("how many?",), per_image_questions=True), "is it red?",
         ["answer en how many?", "answer en is it red?"]),
        ("answer", PromptOptions(per_image_questions=True), None, []),
        ("question", PromptOptions(answers=("a red car",), lang="es"), None, ["question es a red car"]),
    ],
)
def test_prompts(task, options, question, prompts):
    assert get_task(task).build_prompts(options, question) == prompts


def test_prompts_never_end_with_a_newline():
    # The processor appends "\n" itself; a second one would change the tokens the model sees.
    options = PromptOptions(classes=("car",), questions=("q?",), answers=("a",))
    for spec in TASKS.values():
        for prompt in spec.build_prompts(options, "q2?"):
            assert not prompt.endswith("\n")


@pytest.mark.parametrize("task, cap", [("detect", 2048), ("segment", 4096)])
def test_location_budgets_grow_with_classes_and_are_capped(task, cap):
    spec = get_task(task)
    one, three = (spec.max_new_tokens(PromptOptions(classes=tuple("abc"[:n]))) for n in (1, 3))
    assert one < three
    assert spec.max_new_tokens(PromptOptions(classes=tuple(f"c{i}" for i in range(500)))) == cap


def test_default_budgets_fit_crowded_scenes():
    # detect: 4 loc + 1-3 label tokens + separator per object; segment adds 16 codewords
    assert get_task("detect").max_new_tokens(PromptOptions(classes=("car",))) >= 50 * (4 + 2 + 1)
    assert get_task("segment").max_new_tokens(PromptOptions(classes=("car",))) >= 25 * (4 + 16 + 2 + 1)


def test_max_new_tokens_replaces_a_tasks_default_budget():
    options = PromptOptions(classes=("car",), max_new_tokens=(("detect", 64),))
    assert get_task("detect").budget(options) == 64
    assert get_task("caption").budget(options) == get_task("caption").max_new_tokens(options) == 32
    with pytest.raises(ValueError, match="--max-new-tokens names ocr, which --tasks does not run"):
        check_tasks(["detect"], PromptOptions(classes=("car",), max_new_tokens=(("ocr", 9),)))


def test_text_budgets():
    assert get_task("caption").max_new_tokens(PromptOptions()) == 32
    assert get_task("caption").max_new_tokens(PromptOptions(caption_style="describe")) == 128
    assert get_task("ocr").max_new_tokens(PromptOptions()) == 128
    assert get_task("answer").max_new_tokens(PromptOptions()) == 32


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown task 'segmentt'.*caption, detect, segment, ocr, answer, question"):
        get_task("segmentt")


@pytest.mark.parametrize(
    "tasks, options, message",
    [
        (["detect"], PromptOptions(), "detect needs --classes"),
        (["segment"], PromptOptions(), "segment needs --classes"),
        (["answer"], PromptOptions(), "answer needs --questions or --question-column"),
        (["question"], PromptOptions(), "question needs --answers"),
    ],
)
def test_missing_options_are_refused(tasks, options, message):
    with pytest.raises(ValueError, match=message):
        check_tasks(tasks, options)


def test_valid_options_pass():
    specs = check_tasks(["caption", "answer"], PromptOptions(per_image_questions=True))
    assert [s.name for s in specs] == ["caption", "answer"]


def test_duplicate_task_names_are_refused():
    spec = get_task("ocr")
    with pytest.raises(ValueError, match="duplicate"):
        _by_name(spec, TaskSpec(**{**spec.__dict__}))


def test_text_tasks_report_an_empty_answer():
    result = get_task("caption").parse(ModelAnswer("  \n", "caption en", (10, 10)), PromptOptions())
    assert result.text == "" and result.problems == ["empty answer"]


def test_text_tasks_drop_a_prompt_echo():
    result = get_task("caption").parse(ModelAnswer("caption en\na red car ", "caption en", (10, 10)), PromptOptions())
    assert result.text == "a red car" and result.problems == []
