"""Time windows over listings and manifests of URIs (pure helpers behind --since/--until and --input-manifest)."""

import datetime
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage.inputs import InputError, resolve_inputs, resolve_manifest
from pipelines.storage.listing import ListingError, TimeWindow, missing_files, modified_at, read_manifest

UTC = datetime.timezone.utc
NOV_21 = datetime.datetime(2026, 11, 21, tzinfo=UTC)
NOV_22 = datetime.datetime(2026, 11, 22, tzinfo=UTC)


def touch(path, when: datetime.datetime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (when.timestamp(), when.timestamp()))
    return path


@pytest.mark.parametrize(
    "info, expected",
    [
        ({"mtime": NOV_22.timestamp()}, NOV_22),  # local: epoch seconds
        ({"mtime": NOV_22}, NOV_22),  # gcsfs: a datetime
        ({"LastModified": NOV_22.replace(tzinfo=None)}, NOV_22),  # s3fs; naive means UTC
        ({"mtime": "2026-11-22T00:00:00+00:00"}, NOV_22),
        ({"size": 3}, None),
    ],
)
def test_modification_times_of_each_filesystem(info, expected):
    assert modified_at(info) == expected


def test_window_is_half_open():
    window = TimeWindow(since=NOV_21, until=NOV_22)
    assert window.contains("a", {"mtime": NOV_21})
    assert not window.contains("b", {"mtime": NOV_22})  # belongs to the next window
    assert not window.contains("c", {"mtime": NOV_21 - datetime.timedelta(seconds=1)})
    assert TimeWindow(since=NOV_21).contains("d", {"mtime": NOV_22})
    assert not TimeWindow()
    with pytest.raises(ListingError, match="no modification time for e"):
        window.contains("e", {"size": 1})


def test_since_and_until_keep_only_files_modified_inside(tmp_path):
    touch(tmp_path / "old.jpg", NOV_21 - datetime.timedelta(hours=1))
    touch(tmp_path / "new.jpg", NOV_21 + datetime.timedelta(hours=1))
    touch(tmp_path / "sub" / "newer.png", NOV_22 + datetime.timedelta(hours=1))
    touch(tmp_path / "notes.txt", NOV_21 + datetime.timedelta(hours=1))
    plan = resolve_inputs(str(tmp_path), window=TimeWindow(since=NOV_21, until=NOV_22))
    assert [p.rsplit("/", 1)[-1] for p in plan.paths] == ["new.jpg"]
    assert (plan.outside_window, plan.ignored) == (2, 1)
    assert len(resolve_inputs(str(tmp_path), window=TimeWindow(since=NOV_21)).paths) == 2


def test_nothing_new_is_an_empty_plan_not_an_error(tmp_path):
    touch(tmp_path / "old.jpg", NOV_21)
    plan = resolve_inputs(str(tmp_path), window=TimeWindow(since=NOV_22))
    assert plan.paths == [] and plan.kind == "images" and plan.outside_window == 1


def test_manifests_in_parquet_and_csv(tmp_path):
    images = [touch(tmp_path / "img" / name, NOV_21) for name in ("a.jpg", "b.png")]
    uris = [f"file://{images[1]}", str(images[0]), f"file://{images[1]}"]  # a repeat is one input
    pq.write_table(pa.table({"uri": uris}), tmp_path / "m.parquet")
    (tmp_path / "m.csv").write_text("path,other\n" + "\n".join(f"{u},1" for u in uris) + "\n")
    assert read_manifest(str(tmp_path / "m.parquet"), "uri") == uris[:2]
    assert read_manifest(str(tmp_path / "m.csv"), "path") == uris[:2]
    plan = resolve_manifest(str(tmp_path / "m.csv"), "path")
    assert plan.kind == "images" and plan.paths == sorted(str(p) for p in images)


@pytest.mark.parametrize(
    "rows, column, message",
    [
        (["a.jpg"], "url", "has no column 'url'"),
        (["a.jpg", ""], "uri", "has no URI in row 1"),
        (["a.jpg", "gone.jpg"], "uri", "lists 1 missing file(s), first file://"),
        (["a.jpg", "gs://bucket/b.jpg"], "uri", "mixes filesystems"),
    ],
)
def test_bad_manifests_are_clear_errors(tmp_path, rows, column, message):
    touch(tmp_path / "a.jpg", NOV_21)
    rows = [str(tmp_path / r) if r and "://" not in r else r for r in rows]
    pq.write_table(pa.table({"uri": rows}), tmp_path / "m.parquet")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_manifest(str(tmp_path / "m.parquet"), column)


def test_a_missing_or_foreign_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="input manifest not found"):
        resolve_manifest(str(tmp_path / "none.parquet"))
    (tmp_path / "m.json").write_text("[]")
    with pytest.raises(InputError, match="neither .parquet nor .csv"):
        resolve_manifest(str(tmp_path / "m.json"))


def test_missing_files_lists_each_directory_once(tmp_path):
    present = touch(tmp_path / "d" / "x.jpg", NOV_21)
    from fsspec.implementations.local import LocalFileSystem

    assert missing_files(LocalFileSystem(), [str(present), str(tmp_path / "d" / "y.jpg"), str(tmp_path / "e" / "z")]) \
        == [str(tmp_path / "d" / "y.jpg"), str(tmp_path / "e" / "z")]
