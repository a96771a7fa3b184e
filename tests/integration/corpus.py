"""Small on-disk inputs in each format the pipeline reads, with a few broken ones mixed in."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.images import encode, solid

GOOD_IMAGES = {
    "street.jpg": (encode(solid(64, 48, (200, 30, 30)), "JPEG"), (64, 48)),
    "portrait.png": (encode(solid(30, 50, (20, 200, 30)), "PNG"), (30, 50)),
    "nested/wide.webp": (encode(solid(80, 20, (20, 30, 200)), "WEBP"), (80, 20)),
    "nested/deeper/gray.png": (encode(solid(16, 16, 90, mode="L"), "PNG"), (16, 16)),
}
BROKEN_IMAGES = {
    "random_bytes.jpg": os.urandom(256),
    "empty.png": b"",
    "truncated.jpg": encode(solid(64, 64), "JPEG")[:60],
}


def write_image_tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Image files under `root`; returns relative path -> (width, height), or None if broken."""
    sizes: dict[str, tuple[int, int] | None] = {}
    for name, (data, size) in GOOD_IMAGES.items():
        sizes[name] = size
        _write(root / name, data)
    for name, data in BROKEN_IMAGES.items():
        sizes[name] = None
        _write(root / name, data)
    return sizes


def write_webdataset(root: Path) -> list[str]:
    """Two .tar shards; returns the expected `source_uri` suffixes (shard#member)."""
    expected = []
    members = {
        "shard-000.tar": [("a.jpg", GOOD_IMAGES["street.jpg"][0]), ("a.json", b"{}"),
                          ("b.png", GOOD_IMAGES["portrait.png"][0])],
        # a sample with only a caption file has no image: it must still give rows (image_error)
        "shard-001.tar": [("c.webp", GOOD_IMAGES["nested/wide.webp"][0]), ("d.txt", b"no image here"),
                          ("e.jpg", BROKEN_IMAGES["random_bytes.jpg"])],
    }
    root.mkdir(parents=True, exist_ok=True)
    for shard, files in members.items():
        with tarfile.open(root / shard, "w") as tar:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        expected += [f"{shard}#a.jpg", f"{shard}#b.png"] if shard.endswith("000.tar") else \
            [f"{shard}#c.webp", f"{shard}#d", f"{shard}#e.jpg"]
    return expected


def write_parquet(path: Path) -> pa.Table:
    """Image bytes with ids and per-image questions, one null image."""
    table = pa.table({
        "id": ["p0", "p1", "p2"],
        "image": [GOOD_IMAGES["street.jpg"][0], None, GOOD_IMAGES["portrait.png"][0]],
        "question": ["what colour is it?", "is it there?", None],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
