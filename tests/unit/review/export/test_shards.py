"""Exports in shards: Label Studio task files and COCO files of at most N, each whole on its own, together
exactly the single-file export."""

import json
from pathlib import Path

import pytest

from pipelines.review.export import export
from pipelines.review.export.jsonstream import ShardedArrayWriter


def read(path: Path):
    return json.loads(path.read_text())


def test_label_studio_task_files_hold_at_most_n_tasks_and_together_the_whole_export(labelled, tmp_path):
    dataset, _, _ = labelled
    export("labelstudio", str(dataset), str(tmp_path / "one.json"))
    summary = export("labelstudio", str(dataset), str(tmp_path / "shards"), shard_size=2)
    whole = read(tmp_path / "one.json")
    files = sorted((tmp_path / "shards").iterdir())
    assert [f.name for f in files][:2] == ["tasks-00000.json", "tasks-00001.json"]
    shards = [read(f) for f in files]
    assert len(files) == -(-len(whole) // 2) and all(1 <= len(shard) <= 2 for shard in shards)
    assert [task for shard in shards for task in shard] == whole
    assert f"{len(files)} files of at most 2 tasks" in summary


def test_coco_files_stand_alone_with_the_same_categories_and_together_equal_the_single_file(labelled, tmp_path):
    dataset, _, _ = labelled
    export("coco", str(dataset), str(tmp_path / "one.json"))
    export("coco", str(dataset), str(tmp_path / "shards"), shard_size=3)
    whole = read(tmp_path / "one.json")
    shards = [read(f) for f in sorted((tmp_path / "shards").iterdir())]
    assert len(shards) == -(-len(whole["images"]) // 3)
    for shard in shards:
        assert 1 <= len(shard["images"]) <= 3 and shard["categories"] == whole["categories"]
        assert {a["image_id"] for a in shard["annotations"]} <= {image["id"] for image in shard["images"]}
    key = lambda items: sorted(items, key=lambda item: item["id"])  # noqa: E731
    assert key([i for s in shards for i in s["images"]]) == key(whole["images"])
    # the same objects, and ids unique across the files
    annotations = [a for s in shards for a in s["annotations"]]
    assert len({a["id"] for a in annotations}) == len(annotations) == len(whole["annotations"])
    strip = lambda a: json.dumps({k: v for k, v in a.items() if k != "id"}, sort_keys=True)  # noqa: E731
    assert sorted(map(strip, annotations)) == sorted(map(strip, whole["annotations"]))


def test_nothing_written_still_leaves_one_empty_file_and_a_shard_needs_room(tmp_path):
    with ShardedArrayWriter(str(tmp_path), "tasks", 5) as writer:
        pass
    assert writer.paths == [f"{tmp_path}/tasks-00000.json"] and read(tmp_path / "tasks-00000.json") == []
    with pytest.raises(ValueError, match="at least one"):
        ShardedArrayWriter(str(tmp_path), "tasks", 0)
    with pytest.raises(ValueError, match="at least 1"):
        export("coco", str(tmp_path), str(tmp_path / "out"), shard_size=0)
