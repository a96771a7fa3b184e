"""JSON arrays written one element at a time are valid JSON whatever the count."""

import io
import json

import pytest

from pipelines.review.export import export
from pipelines.review.export.jsonstream import JsonArrayWriter, ShardedArrayWriter


@pytest.mark.parametrize("elements", [[], [{"a": 1}], [1, "two", {"three": [3]}]])
def test_any_number_of_elements_is_a_valid_array(elements):
    handle = io.StringIO()
    with JsonArrayWriter(handle) as writer:
        for element in elements:
            writer.write(element)
    assert json.loads(handle.getvalue()) == elements and writer.count == len(elements)


def read_json(path):
    return json.loads(path.read_text())


def test_nothing_written_still_leaves_one_empty_file_and_a_shard_needs_room(tmp_path):
    with ShardedArrayWriter(str(tmp_path), "tasks", 5) as writer:
        pass
    assert writer.paths == [f"{tmp_path}/tasks-00000.json"] and read_json(tmp_path / "tasks-00000.json") == []
    with pytest.raises(ValueError, match="at least one"):
        ShardedArrayWriter(str(tmp_path), "tasks", 0)
    with pytest.raises(ValueError, match="at least 1"):
        export("coco", str(tmp_path), str(tmp_path / "out"), shard_size=0)
