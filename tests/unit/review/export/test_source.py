"""Reading a finished dataset for the exports: URL mapping, filters, and a segment box joined to its mask."""

import pytest

from pipelines.review.export.source import RowFilter, UrlMap, iter_rows, objects_of
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
