"""Resuming: what an earlier attempt left, which inputs are dropped, which tasks are left to do, and
readers refusing a run that has not finished."""

import json

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage.output import (
    JOB_FILE,
    SUMMARY_FILE,
    IncompleteOutputError,
    OutputExistsError,
    WorsePartitionError,
    begin_run,
    check_replacement,
    commit_partition,
    prepare_target,
    read_annotations,
    replace_partition,
    summarize,
    worse_partition_reasons,
    write_json,
    write_summary,
)

JOB = {"input": "in/", "tasks": ["detect", "caption"], "model": "m"}


def write_run(root, rows_by_task: dict[str, list[str]], job=JOB, run_id="first") -> None:
    """What an attempt leaves behind: its _job.json and one Parquet file per task."""
    root.mkdir(parents=True, exist_ok=True)
    (root / JOB_FILE).write_text(json.dumps({**job, "run_id": run_id}))
    for task, ids in rows_by_task.items():
        (root / f"task={task}").mkdir()
        pq.write_table(pa.table({"image_id": ids}), root / f"task={task}" / "a.parquet")


def test_an_unfinished_run_of_the_same_job_is_resumed_from_what_it_wrote(tmp_path):
    write_run(tmp_path / "out", {"detect": ["a", "b"], "caption": ["a"]})
    (tmp_path / "out" / "task=caption" / "killed-mid-write.parquet").write_bytes(b"PAR1 half a file")
    target = prepare_target(str(tmp_path / "out"), overwrite=False, job=JOB)
    state = begin_run(target, JOB, "second", explicit_run_id=False)
    assert [(f.path.rsplit("/", 2)[-2], f.task, f.rows) for f in state.written] == [
        ("task=caption", "caption", 1), ("task=detect", "detect", 2)]
    assert (state.rows_before, state.dropped_files, state.complete) == (3, 1, False)
    assert state.run_id == "first"  # rows of both attempts carry one run id
    assert not (tmp_path / "out" / "task=caption" / "killed-mid-write.parquet").exists()
    assert begin_run(target, JOB, "second", explicit_run_id=True).run_id == "second"


def test_a_finished_run_is_complete_and_a_fresh_one_records_its_job_first(tmp_path):
    write_run(tmp_path / "done", {"detect": ["a"]})
    (tmp_path / "done" / SUMMARY_FILE).write_text("{}")
    assert begin_run(prepare_target(str(tmp_path / "done"), False, job=JOB), JOB, "x", False).complete
    fresh = begin_run(prepare_target(str(tmp_path / "new"), False, job=JOB), JOB, "x", False)
    assert (fresh.written, fresh.complete) == ([], False)
    assert json.loads((tmp_path / "new" / JOB_FILE).read_text()) == {**JOB, "run_id": "x"}


def test_output_of_other_arguments_or_of_no_run_is_refused_without_overwrite(tmp_path):
    write_run(tmp_path / "out", {"detect": ["a"]})
    with pytest.raises(OutputExistsError, match=r"other arguments \(different model, tasks\)"):
        prepare_target(str(tmp_path / "out"), False, job={**JOB, "tasks": ["detect"], "model": "n"})
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):  # --resume not asked
        prepare_target(str(tmp_path / "out"), False, job=None)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.parquet").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="no run of this tool to resume"):
        prepare_target(str(tmp_path / "foreign"), False, job=JOB)
    prepare_target(str(tmp_path / "out"), True, job={**JOB, "model": "n"})
    assert not (tmp_path / "out").exists()  # --overwrite: replaced


def test_a_partitions_staging_of_other_arguments_is_discarded(tmp_path):
    write_run(tmp_path / "ds" / "_staging" / "day=1", {"detect": ["a"]}, job={**JOB, "input": "old/"})
    target = prepare_target(str(tmp_path / "ds"), False, ("day", "1"), job=JOB)
    assert not (tmp_path / "ds" / "_staging" / "day=1").exists()
    write_run(tmp_path / "ds" / "_staging" / "day=1", {"detect": ["a"]})
    prepare_target(str(tmp_path / "ds"), False, ("day", "1"), job=JOB)
    assert [f.rows for f in begin_run(target, JOB, "x", False).written] == [1]


def test_readers_refuse_a_dataset_or_partition_whose_run_has_not_finished(tmp_path):
    write_run(tmp_path / "flat", {"detect": ["a"]})
    with pytest.raises(IncompleteOutputError, match="has no _summary.json"):
        read_annotations(str(tmp_path / "flat"))
    (tmp_path / "flat" / SUMMARY_FILE).write_text("{}")
    assert read_annotations(str(tmp_path / "flat")).num_rows == 1

    for day in ("1", "2"):
        write_run(tmp_path / "parts" / f"day={day}", {"detect": ["a"]})
    (tmp_path / "parts" / "day=1" / SUMMARY_FILE).write_text("{}")
    with pytest.raises(IncompleteOutputError, match="partition day=2 of"):
        read_annotations(str(tmp_path / "parts"))
    (tmp_path / "parts" / "day=2" / SUMMARY_FILE).write_text("{}")
    assert read_annotations(str(tmp_path / "parts")).num_rows == 2


def test_summaries_count_what_was_written_per_task_and_status(tmp_path):
    fs = fsspec.filesystem("file")
    assert summarize(fs, str(tmp_path / "none")) == {"rows": 0, "images": 0, "rows_per_task_and_status": {}}
    for task, ids, statuses in [("detect", ["a", "b"], ["ok", "image_error"]), ("caption", ["a"], ["ok"])]:
        (tmp_path / f"task={task}").mkdir()
        pq.write_table(pa.table({"image_id": ids, "status": statuses}), tmp_path / f"task={task}" / "0.parquet")
    assert summarize(fs, str(tmp_path)) == {
        "rows": 3, "images": 2, "rows_per_task_and_status": {"detect": {"ok": 1, "image_error": 1},
                                                             "caption": {"ok": 1}}}
    uri = write_summary({"rows": 3}, fs, str(tmp_path))
    assert uri == f"file://{tmp_path}/{SUMMARY_FILE}"
    assert json.loads((tmp_path / SUMMARY_FILE).read_text()) == {"rows": 3}


def test_write_json_makes_local_parents(tmp_path):
    uri = write_json({"a": 1}, str(tmp_path / "runs" / "deep" / "x.json"))
    assert uri.endswith("/runs/deep/x.json")
    assert json.loads((tmp_path / "runs" / "deep" / "x.json").read_text()) == {"a": 1}


def test_a_partition_swap_replaces_the_old_rows_and_an_empty_run_leaves_an_empty_partition(tmp_path):
    target = prepare_target(str(tmp_path / "ds"), False, ("run_date", "d1"), job=JOB)
    old = tmp_path / "ds" / "run_date=d1" / "task=detect"
    old.mkdir(parents=True)
    (old / "old.parquet").write_bytes(b"old")
    staged = tmp_path / "ds" / "_staging" / "run_date=d1" / "task=detect"
    staged.mkdir(parents=True)
    (staged / "new.parquet").write_bytes(b"new")
    commit_partition(target)
    assert [p.name for p in (tmp_path / "ds" / "run_date=d1").rglob("*.parquet")] == ["new.parquet"]
    assert not (tmp_path / "ds" / "_staging").exists()
    replace_partition(target, None)
    assert (tmp_path / "ds" / "run_date=d1").is_dir() and not any((tmp_path / "ds" / "run_date=d1").iterdir())


@pytest.mark.parametrize("old, new, reasons", [
    # a rerun of the same day: as good, or a little worse (a stricter model): replaced
    ({"detect": {"ok": 6}}, {"detect": {"ok": 6}}, []),
    ({"detect": {"ok": 6}}, {"detect": {"ok": 3, "invalid_output": 3}}, []),
    # wrong flags: every row invalid_output (issue #21)
    ({"detect": {"ok": 6}}, {"detect": {"invalid_output": 6}},
     ["detect: 0 ok rows (6 invalid_output) where the old partition has 6"]),
    # one broken task is not hidden by a healthy one
    ({"detect": {"ok": 6}, "caption": {"ok": 6}}, {"detect": {"ok": 2, "invalid_output": 4}, "caption": {"ok": 6}},
     ["detect: 2 ok rows (4 invalid_output) where the old partition has 6"]),
    # a task dropped, or nothing found at all (a wrong --input): worse
    ({"detect": {"ok": 6}, "caption": {"ok": 6}}, {"caption": {"ok": 6}},
     ["detect: 0 ok rows where the old partition has 6"]),
    ({"caption": {"ok": 1}}, {}, ["caption: 0 ok rows where the old partition has 1"]),
    # nothing ok to lose, or a new task: replaced
    ({"detect": {"invalid_output": 6}}, {"detect": {"invalid_output": 6}}, []),
    ({}, {"detect": {"ok": 1}}, []),
])
def test_a_partition_is_worse_when_a_task_loses_more_than_half_its_ok_rows(old, new, reasons):
    assert worse_partition_reasons(old, new) == reasons


def write_rows(directory, task: str, statuses: list[str]) -> None:
    (directory / f"task={task}").mkdir(parents=True, exist_ok=True)
    ids = [f"i{n}" for n in range(len(statuses))]
    pq.write_table(pa.table({"image_id": ids, "status": statuses}), directory / f"task={task}" / "0.parquet")


def test_a_worse_staging_is_refused_and_both_are_kept_unless_told_to_replace(tmp_path):
    target = prepare_target(str(tmp_path / "ds"), False, ("run_date", "d1"), job=JOB)
    write_rows(tmp_path / "ds" / "run_date=d1", "detect", ["ok"] * 4)
    write_rows(tmp_path / "ds" / "_staging" / "run_date=d1", "detect", ["invalid_output"] * 4)
    with pytest.raises(WorsePartitionError, match=r"kept the old partition run_date=d1: .*detect: 0 ok rows "
                       r"\(4 invalid_output\) where the old partition has 4.*--replace-worse") as refused:
        check_replacement(target)
    assert refused.value.kept["staging"] == f"file://{tmp_path}/ds/_staging/run_date=d1"
    assert refused.value.kept["old_rows_per_task_and_status"] == {"detect": {"ok": 4}}
    assert (tmp_path / "ds" / "run_date=d1" / "task=detect").exists()
    assert (tmp_path / "ds" / "_staging" / "run_date=d1" / "task=detect").exists()
    check_replacement(target, replace_worse=True)  # told to: no objection
    first = prepare_target(str(tmp_path / "ds"), False, ("run_date", "d2"), job=JOB)
    check_replacement(first)  # no old partition: nothing to compare with
