"""Small on-disk inputs in each format the pipeline reads, with a few broken ones mixed in."""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from tests.images import animated_gif, encode, png_claiming_size, solid, with_exif_orientation

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


# Every kind of awkward input a large crawl holds, with the outcome the pipeline must give it:
# (width, height) when it is annotated in that displayed size, or a fragment of its image_error reason.
BAD_INPUT_LIMIT = 1_000_000  # --max-image-pixels for the corpus run


def bad_input_images() -> dict[str, tuple[bytes, tuple[int, int] | str]]:
    stored = solid(40, 20, (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    sixteen_bit = Image.fromarray(np.full((12, 9), 0x8000, dtype=np.uint16))
    duplicate = encode(solid(33, 21, (90, 90, 10)), "PNG")
    return {
        "zero-byte.jpg": (b"", "no image data"),
        "truncated.jpg": (encode(solid(64, 64), "JPEG")[:200], "OSError"),
        "random-bytes.jpg": (bytes(random.Random(5).randrange(256) for _ in range(512)), "UnidentifiedImageError"),
        "alpha.png": (encode(solid(10, 14, (0, 0, 0, 0), mode="RGBA"), "PNG"), (10, 14)),
        "palette.png": (encode(solid(11, 7, (1, 2, 3)).convert("P"), "PNG"), (11, 7)),
        "16-bit.png": (encode(sixteen_bit, "PNG"), (9, 12)),
        "cmyk.jpg": (encode(solid(15, 10, (0, 50, 100, 0), mode="CMYK"), "JPEG"), (15, 10)),
        "grayscale.jpg": (encode(solid(8, 13, 77, mode="L"), "JPEG"), (8, 13)),
        "exif-rotated.jpg": (with_exif_orientation(stored, 6), (20, 40)),  # stored 40x20, displayed 20x40
        "animated.gif": (animated_gif([(250, 0, 0), (0, 0, 250)]), (12, 8)),
        "one-pixel.png": (encode(solid(1, 1), "PNG"), (1, 1)),
        "bomb.png": (png_claiming_size(100_000, 100_000), "ImageTooLargeError: 100000x100000"),
        "over-limit.png": (encode(solid(1001, 1000), "PNG"), "over the limit of 1,000,000"),
        "with space/a b.png": (encode(solid(6, 5), "PNG"), (6, 5)),
        "non-ascii/café ☕ 画像.png": (encode(solid(5, 6), "PNG"), (5, 6)),
        "same-1.png": (duplicate, (33, 21)),
        "same-2.png": (duplicate, (33, 21)),
    }


def write_bad_input_images(root: Path) -> dict[str, tuple[int, int] | str]:
    """The corpus under `root`; returns relative path -> expected outcome (see `bad_input_images`)."""
    outcomes = {}
    for name, (data, outcome) in bad_input_images().items():
        _write(root / name, data)
        outcomes[name] = outcome
    return outcomes


def write_hostile_shard(path: Path, escape_name: str) -> dict[str, tuple[int, int] | str]:
    """A .tar shard whose member names try to leave the shard (`../`, absolute) and a sample with no
    image; returns member key -> expected outcome."""
    good = encode(solid(9, 9), "PNG")
    members = [(f"../../{escape_name}.png", good), (f"/tmp/{escape_name}-abs.png", good),
               ("notes.txt", b"not an image"), ("ok.png", good)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {f"../../{escape_name}.png": (9, 9), f"/tmp/{escape_name}-abs.png": (9, 9),
            "notes": "no image data", "ok.png": (9, 9)}
