"""Synthetic shapes: exact ground truth, deterministic bytes, every shard format the pipeline reads."""

import io
import json
import re
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from pipelines.devtools.shapes import COLORS, SHAPES, SIZE_RANGE, caption_for, draw_scene, write_shapes
from pipelines.storage.inputs import resolve_inputs
from schemas import Rle

CAPTION = re.compile(r"^a \w+ \w+((, a \w+ \w+)* and a \w+ \w+)?$")


@pytest.fixture(scope="module")
def scenes():
    return [draw_scene(np.random.default_rng([3, i])) for i in range(40)]


def test_masks_boxes_and_pixels_agree_exactly(scenes):
    for scene in scenes:
        pixels = np.asarray(scene.image)
        assert scene.image.size == (scene.width, scene.height) and 1 <= len(scene.objects) <= 3
        taken = np.zeros((scene.height, scene.width), bool)
        for obj in scene.objects:
            mask = obj.rle.to_binary()
            assert mask.shape == (scene.height, scene.width) and obj.area == mask.sum() > 0
            x, y, w, h = obj.bbox
            rows, cols = np.nonzero(mask)
            assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x, y, x + w, y + h)  # tight
            assert (pixels[mask] == COLORS[obj.color]).all()  # no anti-aliasing: every mask pixel is the colour
            assert not (taken & mask).any()
            taken |= mask
        assert not np.isin(pixels[~taken].reshape(-1, 3), list(COLORS.values())).all(axis=1).any()


def test_sizes_classes_and_colours_vary(scenes):
    assert len({(s.width, s.height) for s in scenes}) > 30 and any(s.width != s.height for s in scenes)
    low, high = SIZE_RANGE
    assert all(low <= s.width <= high and low <= s.height <= high for s in scenes)
    objects = [obj for s in scenes for obj in s.objects]
    assert {obj.category for obj in objects} == set(SHAPES) and {obj.color for obj in objects} == set(COLORS)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}


def test_captions_name_the_objects_left_to_right(scenes):
    for scene in scenes:
        assert CAPTION.match(scene.caption), scene.caption
        centres = [obj.bbox[0] + obj.bbox[2] / 2 for obj in scene.objects]
        assert centres == sorted(centres)
        assert scene.caption == caption_for(scene.objects)
    three = [s for s in scenes if len(s.objects) == 3][0]
    a, b, c = (f"a {o.color} {o.category}" for o in three.objects)
    assert three.caption == f"{a}, {b} and {c}"


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for run in ("one", "two"):
        write_shapes(str(tmp_path / run), count=5, seed=11, fmt="webdataset", shard_size=2)
    write_shapes(str(tmp_path / "other"), count=5, seed=12, fmt="webdataset", shard_size=2)
    one, two, other = (sorted((tmp_path / d / "shards").iterdir()) for d in ("one", "two", "other"))
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert one[0].read_bytes() != other[0].read_bytes()
    one_truth, two_truth = ((tmp_path / d / "ground_truth.json").read_bytes() for d in ("one", "two"))
    assert one_truth == two_truth


@pytest.mark.parametrize("fmt, folder, files", [("images", "images", 7), ("webdataset", "shards", 3),
                                                ("parquet", "parquet", 3)])
def test_every_format_is_readable_and_named_by_its_ground_truth(tmp_path, fmt, folder, files):
    summary = write_shapes(str(tmp_path), count=7, seed=5, fmt=fmt, shard_size=3, overwrite=True)
    assert summary["images"] == 7 and summary["files"] == files
    names = [image["file_name"] for image in json.loads((tmp_path / "ground_truth.json").read_text())["images"]]
    assert names == [f"shapes-5-{i:06d}.png" for i in range(7)]
    paths = sorted((tmp_path / folder).iterdir())
    if fmt == "images":
        found = {p.name: p.read_bytes() for p in paths}
    elif fmt == "webdataset":
        found = {}
        for path in paths:
            with tarfile.open(path) as tar:
                found.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    else:
        found = {}
        for path in paths:
            table = pq.read_table(path)
            found.update(zip(table.column("uri").to_pylist(), table.column("image").to_pylist()))
    assert sorted(found) == names
    assert all(Image.open(io.BytesIO(data)).format == "PNG" for data in found.values())
    assert resolve_inputs(str(tmp_path / folder), "auto").kind == fmt


def test_ground_truth_loads_in_pycocotools(tmp_path):
    write_shapes(str(tmp_path), count=6, seed=2)
    coco = COCO(str(tmp_path / "ground_truth.json"))
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(SHAPES)
    for annotation in coco.loadAnns(coco.getAnnIds()):
        rle = Rle(**annotation["segmentation"])
        np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), rle.to_binary())
        assert annotation["area"] == rle.to_binary().sum() and annotation["color"] in COLORS
    assert len(json.loads((tmp_path / "ground_truth.json").read_text())["captions"]) == 6


def test_bad_values_and_existing_output_are_refused(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        write_shapes(str(tmp_path / "a"), count=1, seed=0, fmt="zip")
    with pytest.raises(ValueError, match="positive"):
        write_shapes(str(tmp_path / "b"), count=0, seed=0)
    write_shapes(str(tmp_path / "c"), count=1, seed=0)
    with pytest.raises(ValueError, match="already exists"):
        write_shapes(str(tmp_path / "c"), count=1, seed=0)
