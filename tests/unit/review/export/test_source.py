"""Reading a finished dataset for the exports: URL mapping, filters, and a segment box joined to its mask."""

import pytest

from pipelines.review.export.source import (
    RowFilter,
    UrlMap,
    common_root,
    iter_images,
    iter_rows,
    objects_of,
    relative_name,
)
from pipelines.storage.output import IncompleteOutputError


def test_url_prefixes_map_source_uris_first_match_wins():
    urls = UrlMap.parse(["gs://bucket/a=https://host/a", "gs://bucket=https://host/all"])
    assert urls.url("gs://bucket/a/x.jpg") == "https://host/a/x.jpg"
    assert urls.url("gs://bucket/b/y.jpg") == "https://host/all/b/y.jpg"
    assert urls.url("file:///elsewhere.png") == "file:///elsewhere.png"
    with pytest.raises(ValueError, match="FROM=TO"):
        UrlMap.parse(["gs://bucket"])


def box(label, x, score):
    return {"label": label, "x_min": x, "y_min": 0.0, "x_max": x + 5.0, "y_max": 5.0, "score": score}


def test_a_segment_box_and_its_mask_are_one_object_scored_by_the_mask():
    mask = {**box("car", 0.0, 0.9), "rle": {"size": [5, 5], "counts": "x"}}
    row = {"boxes": [box("car", 0.0, 0.2), box("person", 10.0, None)], "masks": [mask]}
    assert list(objects_of(row)) == [(box("car", 0.0, 0.2), mask), (box("person", 10.0, None), None)]
    # a threshold keeps the car (its mask scores 0.9) and drops the unscored person
    assert [b["label"] for b, _ in objects_of(row, RowFilter(min_score=0.5))] == ["car"]


def test_rows_come_in_bounded_batches_filtered_by_task_and_status(labelled):
    dataset, rows, _ = labelled
    batches = list(iter_rows(str(dataset), ["task", "status"], RowFilter(tasks=("detect",), statuses=("ok",)),
                             batch_size=2))
    assert all(len(batch) <= 2 for batch in batches)
    got = [row for batch in batches for row in batch]
    assert got and {(row["task"], row["status"]) for row in got} == {("detect", "ok")}
    assert len(got) == len([r for r in rows if r.task == "detect" and r.status == "ok"])


def test_an_unfinished_dataset_is_refused(tmp_path):
    (tmp_path / "task=detect").mkdir(parents=True)
    with pytest.raises(IncompleteOutputError):
        list(iter_rows(str(tmp_path), ["task"]))


@pytest.mark.parametrize("rows_per_bucket", [10_000, 4])  # in memory, and spilled to 6 hash buckets
def test_rows_come_grouped_by_image_whatever_the_memory_bound(labelled, rows_per_bucket):
    dataset, rows, _ = labelled
    images = list(iter_images(str(dataset), ["status"], rows_per_bucket=rows_per_bucket, batch_size=3))
    assert sorted(len(image) for image in images) == [1] + [3] * 6
    for image in images:
        assert len({row["image_id"] for row in image}) == 1
        assert [row["task"] for row in image] == sorted(row["task"] for row in image)
    assert sorted(row["image_id"] for image in images for row in image) == sorted(r.image_id for r in rows)
    only_ok = list(iter_images(str(dataset), ["status"], RowFilter(statuses=("ok",)), rows_per_bucket=rows_per_bucket))
    assert len(only_ok) == 6


def test_names_below_the_common_root_are_unique():
    uris = ["file:///data/a/x.png", "file:///data/b/x.png", "file:///data/b/c/y.png"]
    root = common_root(uris)
    assert root == "file:///data/"
    assert [relative_name(uri, root) for uri in uris] == ["a/x.png", "b/x.png", "b/c/y.png"]
    assert common_root(["gs://b/s/shard-0.tar#a.png", "gs://b/s/shard-1.tar#a.png"]) == "gs://b/s/"
    assert relative_name("gs://b/s/shard-0.tar#a.png", "gs://b/s/") == "shard-0.tar#a.png"
    assert common_root(["/only/one.png"]) == "/only/" and relative_name("/only/one.png", "/only/") == "one.png"
    assert relative_name("s3://other/z.png", "file:///data/") == "other/z.png"
