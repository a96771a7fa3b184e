"""Resuming: what an earlier attempt left, which inputs are dropped, which tasks are left to do, and
readers refusing a run that has not finished."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.resume import drop_finished
from pipelines.write import (
    JOB_FILE,
    SUMMARY_FILE,
    IncompleteOutputError,
    OutputExistsError,
    begin_run,
    prepare_target,
    read_annotations,
)
from schemas import columns as C


def test_finished_images_are_dropped_and_partly_finished_ones_carry_their_done_tasks():
    batch = {C.IMAGE_ID: np.array(["a", "b", "c", "d"], dtype=object),
             C.IMAGE_BYTES: np.array([b"1", b"2", b"3", b"4"], dtype=object)}
    finished = {"a": frozenset({"detect", "caption"}), "b": frozenset({"caption"}), "x": frozenset({"detect"}),
                "d": frozenset({"detect", "caption", "ocr"})}
    out = drop_finished(batch, finished, ["detect", "caption"])
    assert list(out[C.IMAGE_ID]) == ["b", "c"]
    assert list(out[C.IMAGE_BYTES]) == [b"2", b"3"]
    assert list(out[C.DONE_TASKS]) == ["caption", ""]


def test_nothing_finished_keeps_every_row():
    batch = {C.IMAGE_ID: np.array(["a", "b"], dtype=object)}
    out = drop_finished(batch, {}, ["detect"])
    assert list(out[C.IMAGE_ID]) == ["a", "b"] and list(out[C.DONE_TASKS]) == ["", ""]


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
    assert state.finished == {"a": {"detect", "caption"}, "b": {"detect"}}
    assert (state.rows_before, state.dropped_files, state.complete) == (3, 1, False)
    assert state.run_id == "first"  # rows of both attempts carry one run id
    assert not (tmp_path / "out" / "task=caption" / "killed-mid-write.parquet").exists()
    assert begin_run(target, JOB, "second", explicit_run_id=True).run_id == "second"


def test_a_finished_run_is_complete_and_a_fresh_one_records_its_job_first(tmp_path):
    write_run(tmp_path / "done", {"detect": ["a"]})
    (tmp_path / "done" / SUMMARY_FILE).write_text("{}")
    assert begin_run(prepare_target(str(tmp_path / "done"), False, job=JOB), JOB, "x", False).complete
    fresh = begin_run(prepare_target(str(tmp_path / "new"), False, job=JOB), JOB, "x", False)
    assert (fresh.finished, fresh.complete) == ({}, False)
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
    assert begin_run(target, JOB, "x", False).finished == {"a": {"detect"}}


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
