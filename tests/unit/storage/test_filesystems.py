"""fsspec filesystems handed to pyarrow and Ray Data keep their settings, and a dataset reads with its partitions."""

import fsspec
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from pipelines.storage.filesystems import annotation_dataset, arrow_filesystem


def test_the_fsspec_filesystem_itself_serves_pyarrow():
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/a.txt", b"hello")
    wrapped = arrow_filesystem(memory)
    assert isinstance(wrapped, pafs.PyFileSystem) and wrapped.handler.fs is memory
    with wrapped.open_input_stream("/bucket/a.txt") as handle:
        assert handle.read() == b"hello"


def test_an_annotation_dataset_reads_with_its_hive_partitions(tmp_path):
    table = pa.table({"image_id": ["a", "b"], "task": ["detect", "caption"], "run_date": ["d1", "d2"]})
    pads.write_dataset(table, tmp_path, format="parquet", partitioning=["run_date", "task"],
                       partitioning_flavor="hive")
    read = annotation_dataset(fsspec.filesystem("file"), str(tmp_path)).to_table()
    assert sorted(zip(*(read.column(c).to_pylist() for c in ("image_id", "task", "run_date")))) == [
        ("a", "detect", "d1"), ("b", "caption", "d2")]
