"""The whole pipeline on a real local Ray with a real (tiny, random) PaliGemma checkpoint."""

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines.run import annotate
from pipelines.stages.read import image_id_for
from schemas import LABEL_ROW_SCHEMA
from schemas.job import JobConfig
from tests.integration.conftest import read_output, short_budgets
from tests.integration.corpus import write_image_tree, write_parquet, write_webdataset
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration


def keys(table):
    return list(zip(*(table.column(c).to_pylist() for c in ("image_id", "task", "prompt"))))


def test_images_every_input_and_prompt_exactly_once(tmp_path, ray_local, tiny_model_dir):
    sizes = write_image_tree(tmp_path / "in")
    cfg = JobConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tiny_model_dir,
                    tasks="detect,caption,answer", classes="car,person", questions="what is it?|how many?",
                    batch_size=3, run_id="run-1", max_new_tokens=short_budgets("detect,caption,answer"))
    summary = annotate(cfg)
    table = read_output(str(tmp_path / "out"))

    # 7 images x (detect + caption + 2 answers) prompts, each exactly once
    assert_each_once(table, 7 * 4)
    uris = {f"file://{tmp_path / 'in' / name}": size for name, size in sizes.items()}
    assert set(table.column("image_id").to_pylist()) == {image_id_for(u) for u in uris}
    assert Counter(table.column("task").to_pylist()) == {"detect": 7, "caption": 7, "answer": 14}

    for row in table.to_pylist():
        size = uris[row["source_uri"]]
        if size is None:
            assert row["status"] == "image_error" and row["error"] and row["width"] is None
            assert row["raw_output"] is None
        else:
            assert (row["width"], row["height"]) == size
            assert row["status"] in ("ok", "invalid_output") and row["raw_output"] is not None
            assert (row["status"] == "ok") == (row["error"] is None)
        assert row["model"] == tiny_model_dir and row["run_id"] == "run-1"

    # files carry the derived schema (the task column lives in the hive path)
    for path in (tmp_path / "out").rglob("*.parquet"):
        without_task = LABEL_ROW_SCHEMA.remove(LABEL_ROW_SCHEMA.get_field_index("task"))
        assert pq.read_schema(path).remove_metadata() == without_task
        assert path.parent.name.startswith("task=")

    written = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert written["rows"] == summary["rows"] == 28 and written["images"] == 7
    assert sum(written["rows_per_task_and_status"]["detect"].values()) == 7
    assert written["rows_per_task_and_status"]["caption"]["image_error"] == 3

    # a rerun with --overwrite gives the same ids and, greedy decoding, the same answers
    annotate(cfg.model_copy(update={"overwrite": True, "run_id": "run-2"}))
    again = read_output(str(tmp_path / "out"))
    before = {k: r for k, r in zip(keys(table), table.column("raw_output").to_pylist())}
    after = {k: r for k, r in zip(keys(again), again.column("raw_output").to_pylist())}
    assert before == after and set(again.column("run_id").to_pylist()) == {"run-2"}


def test_webdataset_shards(tmp_path, ray_local, tiny_model_dir):
    expected = write_webdataset(tmp_path / "shards")
    annotate(JobConfig(input=str(tmp_path / "shards"), output=str(tmp_path / "out"), model=tiny_model_dir,
                       tasks="ocr,caption", max_new_tokens=short_budgets("ocr,caption")))
    table = read_output(str(tmp_path / "out"))
    assert_each_once(table, len(expected) * 2)
    by_uri = {}
    for row in table.to_pylist():
        by_uri.setdefault(row["source_uri"].split("/shards/", 1)[1], set()).add(row["status"])
    assert set(by_uri) == set(expected)
    assert by_uri["shard-001.tar#d"] == {"image_error"}  # a sample with no image member
    assert by_uri["shard-001.tar#e.jpg"] == {"image_error"}  # random bytes
    assert by_uri["shard-000.tar#a.jpg"] <= {"ok", "invalid_output"}


def test_parquet_with_ids_and_per_image_questions(tmp_path, ray_local, tiny_model_dir):
    write_parquet(tmp_path / "in" / "images.parquet")
    annotate(JobConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tiny_model_dir,
                       tasks="answer,caption", id_column="id", question_column="question",
                       max_new_tokens=short_budgets("answer,caption")))
    rows = {(r["image_id"], r["task"]): r for r in read_output(str(tmp_path / "out")).to_pylist()}
    assert set(rows) == {(i, t) for i in ("p0", "p1", "p2") for t in ("answer", "caption")}
    assert rows[("p0", "answer")]["prompt"] == "answer en what colour is it?"
    assert rows[("p1", "answer")]["status"] == "image_error"  # null image bytes
    assert rows[("p2", "answer")]["status"] == "image_error"  # no question for this image
    assert "no question" in rows[("p2", "answer")]["error"]
    assert rows[("p2", "caption")]["status"] in ("ok", "invalid_output")
