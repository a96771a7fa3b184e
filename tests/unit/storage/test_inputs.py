"""Finding a job's input files: recursive listing, globs, kinds, and clear errors before Ray starts."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage.inputs import InputError, check_parquet_columns, resolve_inputs
from schemas.job import JobConfig


@pytest.fixture
def tree(tmp_path):
    for name in ["a.jpg", "B.PNG", "sub/c.webp", "sub/deeper/d.tiff", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_directories_are_searched_recursively_and_other_files_counted(tree):
    plan = resolve_inputs(str(tree))
    assert plan.kind == "images"
    assert sorted(p.rsplit("/", 1)[-1] for p in plan.paths) == ["B.PNG", "a.jpg", "c.webp", "d.tiff"]
    assert plan.ignored == 1
    assert plan.uri(plan.paths[0]).startswith("file://")


def test_globs_and_single_files(tree):
    assert len(resolve_inputs(str(tree / "sub" / "*.webp")).paths) == 1
    assert len(resolve_inputs(str(tree / "a.jpg")).paths) == 1


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        resolve_inputs(str(tmp_path / "nope"))


def test_mixed_kinds_need_an_explicit_format(tree):
    (tree / "shard.tar").write_bytes(b"x")
    with pytest.raises(InputError, match="several input kinds"):
        resolve_inputs(str(tree))
    assert resolve_inputs(str(tree), "webdataset").paths[0].endswith("shard.tar")


def test_nothing_readable_is_a_clear_error(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(InputError, match="no images"):
        resolve_inputs(str(tmp_path))


def test_parquet_columns_named_by_flags_must_exist(tmp_path):
    pq.write_table(pa.table({"img": [b"x"], "key": ["a"]}), tmp_path / "part.parquet")
    plan = resolve_inputs(str(tmp_path))
    ok = JobConfig(input=str(tmp_path), output="o", tasks="ocr", image_column="img", id_column="key")
    check_parquet_columns(plan, ok)
    message = r"no column --image-column 'image', --uri-column 'uri'; its columns are img, key"
    with pytest.raises(InputError, match=message):
        check_parquet_columns(plan, ok.model_copy(update={"image_column": "image", "uri_column": "uri"}))
