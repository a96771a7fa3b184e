import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from pipelines.storage.completion import images_in_file, plan_resume, sample_key
from pipelines.storage.inputs import InputFiles
from pipelines.storage.output import WrittenFile
from pipelines.tasks.registry import get_task
from schemas.job import PromptOptions

FS = LocalFileSystem()
TASKS = [get_task("detect"), get_task("caption")]
OPTIONS = PromptOptions(classes=("car",))


def written(root, rows_by_task: dict[str, list[tuple[str, str]]]) -> list[WrittenFile]:
    """Output files of an earlier attempt: (image_id, source_uri) rows per task."""
    files = []
    for task, rows in rows_by_task.items():
        path = root / f"task={task}" / "part-0.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"image_id": [r[0] for r in rows], "source_uri": [r[1] for r in rows]}), path)
        files.append(WrittenFile(str(path), task, len(rows)))
    return files


def test_finished_image_files_are_not_read_again_and_only_files_in_flight_are_remembered(tmp_path):
    paths = [str(tmp_path / "in" / f"{i}.png") for i in range(4)]
    inputs = InputFiles("images", paths, FS, ignored=0)
    uri = [inputs.uri(p) for p in paths]
    # 0: both tasks written; 1: detect only (in flight); 2, 3: nothing
    files = written(tmp_path / "out", {"detect": [("i0", uri[0]), ("i1", uri[1])], "caption": [("i0", uri[0])]})
    resume = plan_resume(FS, files, inputs, TASKS, OPTIONS, uri_column=None)
    assert resume.finished_paths == {paths[0]}
    assert resume.finished == {"i1": {"detect"}}  # i0's file is skipped whole, so its id is not kept
    assert resume.images_finished == 1


def test_a_shard_is_finished_only_when_every_image_and_prompt_of_it_is_written(tmp_path):
    shard = tmp_path / "in" / "a.parquet"
    shard.parent.mkdir()
    pq.write_table(pa.table({"image": [b"x", b"y", b"z"]}), shard)
    inputs = InputFiles("parquet", [str(shard)], FS, ignored=0)
    base = inputs.uri(str(shard))
    rows = [(f"r{i}", f"{base}#row={i:016x}") for i in range(3)]
    two_questions = PromptOptions(questions=("q1", "q2"))
    answer = [get_task("answer")]
    half = written(tmp_path / "half", {"answer": rows + rows[:2]})  # 5 of 3 x 2 rows
    resume = plan_resume(FS, half, inputs, answer, two_questions, uri_column=None)
    assert resume.finished_paths == frozenset() and set(resume.finished) == {"r0", "r1", "r2"}
    full = written(tmp_path / "full", {"answer": rows * 2})
    resume = plan_resume(FS, full, inputs, answer, two_questions, uri_column=None)
    assert (resume.finished_paths, resume.finished, resume.images_finished) == ({str(shard)}, {}, 3)


def test_rows_named_by_a_uri_column_fall_back_to_every_written_id(tmp_path):
    inputs = InputFiles("parquet", [str(tmp_path / "a.parquet")], FS, ignored=0)
    files = written(tmp_path / "out", {"detect": [("i0", "https://x/0.jpg")], "caption": [("i0", "https://x/0.jpg")]})
    resume = plan_resume(FS, files, inputs, TASKS, OPTIONS, uri_column="url")
    assert resume.finished_paths == frozenset()
    assert (resume.finished, resume.images_finished) == ({"i0": {"detect", "caption"}}, 1)


@pytest.mark.parametrize(("member", "key"), [("a/b.seg.png", "a/b"), ("x.jpg", "x"), ("noext", None),
                                             (".hidden", None), ("d.v1/s.png", "d.v1/s")])
def test_sample_keys_follow_the_webdataset_rule(member, key):
    assert sample_key(member) == key


def test_a_tar_holds_as_many_images_as_samples(tmp_path):
    path = tmp_path / "shard.tar"
    with tarfile.open(path, "w") as tar:
        for name in ["s0.jpg", "s0.json", "s1.png", "s2.txt", "README"]:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    assert images_in_file(FS, str(path), "webdataset") == 3  # s2 has no image: it still gets its rows
