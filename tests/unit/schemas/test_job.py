"""JobConfig: the flags' rules live here, and a run's identity is what decides its rows."""

import datetime

import pytest
from pydantic import ValidationError

from schemas.job import JobConfig

BASE = {"input": "in/", "output": "out/", "tasks": "detect,caption", "classes": "car, person"}


def job(**changes) -> JobConfig:
    return JobConfig.model_validate({**BASE, **changes})


def test_lists_are_split_and_stripped():
    cfg = job(questions="what is it?|how many?")
    assert cfg.tasks == ["detect", "caption"] and cfg.classes == ["car", "person"]
    assert cfg.questions == ["what is it?", "how many?"]


@pytest.mark.parametrize("changes, message", [
    ({"tasks": ""}, "give at least one task"),
    ({"tasks": "detect,detect"}, "a task is listed twice"),
    ({"input": None}, "exactly one of --input and --input-manifest"),
    ({"input_manifest": "m.csv"}, "exactly one of --input and --input-manifest"),
    ({"since": "2026-11-22", "until": "2026-11-21"}, "is not before --until"),
    ({"partition": "run date=x"}, "is not key=value"),
    ({"partition": "task=x"}, "already the dataset's inner partition"),
    ({"partition": "run_date=2026-11-21", "overwrite": True}, "give one or the other"),
    ({"replace_worse": True}, "give it with --partition"),
])
def test_contradictory_flags_are_refused_with_the_reason(changes, message):
    with pytest.raises(ValidationError, match=message):
        job(**changes)


def test_times_without_a_zone_are_utc():
    assert job(since="2026-11-21").since == datetime.datetime(2026, 11, 21, tzinfo=datetime.timezone.utc)


def test_identity_leaves_out_how_a_run_goes_but_keeps_what_it_writes():
    cfg = job()
    assert cfg.identity() == job(batch_size=4, num_actors=3, run_id="x", resume=False, summary_uri="s").identity()
    # a refused replacement is rerun with --replace-worse and resumes its staging instead of starting again
    assert job(partition="d=1").identity() == job(partition="d=1", replace_worse=True).identity()
    assert cfg.identity() != job(classes="car").identity()
    assert not set(cfg.identity()) & JobConfig.OPERATIONAL_FIELDS


def test_prompt_options_and_model_name_come_from_the_flags():
    cfg = job(question_column="q", revision="abc", model="google/paligemma2-3b-mix-448")
    options = cfg.prompt_options()
    assert options.classes == ("car", "person") and options.per_image_questions
    assert cfg.model_name == "google/paligemma2-3b-mix-448@abc"
    assert job(partition="run_date=2026-11-21").partition_key_value == ("run_date", "2026-11-21")


def test_max_new_tokens_are_task_budgets_passed_to_the_prompt_options():
    cfg = job(max_new_tokens="detect=600, caption=64")
    assert cfg.max_new_tokens == {"detect": 600, "caption": 64}
    assert cfg.prompt_options().max_new_tokens == (("caption", 64), ("detect", 600))
    assert cfg.identity()["max_new_tokens"] == {"detect": 600, "caption": 64}  # it changes the rows
    for bad in ("detect", "detect=0", "detect=many"):
        with pytest.raises(ValidationError, match="is not TASK=N"):
            job(max_new_tokens=bad)
