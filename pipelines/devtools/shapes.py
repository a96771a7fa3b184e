"""A synthetic labelled dataset: coloured circles, squares and triangles on light backgrounds.

Every image comes with exact ground truth (COCO boxes, RLE masks, a caption), so a small
PaliGemma can be trained and the pipeline's answers scored without hand labels. Image i of a
seed is named `shapes-{seed}-{i:06d}.png`; that name ends the pipeline's `source_uri` (or is the
Parquet `uri` column), so it joins predictions to `ground_truth.json`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from pipelines.storage.output import prepare_output
from schemas.annotations import Rle

SHAPES = ("circle", "square", "triangle")  # the detection classes; category id = index + 1
COLORS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (240, 200, 0)}
FORMATS = ("images", "webdataset", "parquet")
GROUND_TRUTH_FILE = "ground_truth.json"

# Image sides and shape sizes: large enough that a 1.35M-parameter model trained for 13 CPU minutes
# localises and names the shapes (at 96-320 px sides and shapes 0.20-0.45 of the short side, 700
# detect steps reached mAP@.5 0.004; at these, 0.179). Aspect ratios still reach 1.6, so a wrong
# x/y mapping shows. Big shapes leave less room: of 6,000 scenes, 53% hold 1 shape, 41% 2, 6% 3.
SIZE_RANGE = (160, 256)  # default width and height range, in pixels, drawn independently
_SHAPE_SCALE = (0.35, 0.60)  # shape side as a fraction of the image's shorter side
_BACKGROUND = (190, 250)  # channel range of the background colour: light, far from every shape colour
_MAX_SHAPES = 3
_PLACEMENT_TRIES = 20
_MARGIN = 4  # pixels kept free between the boxes of two shapes


@dataclass(frozen=True)
class ShapeObject:
    """One drawn shape and its ground truth, in the image's pixels."""

    category: str  # one of SHAPES
    color: str  # one of COLORS
    bbox: tuple[int, int, int, int]  # COCO [x, y, w, h], the tight box of the mask's pixels
    rle: Rle  # the mask over the whole image
    area: int  # mask pixels


@dataclass(frozen=True)
class Scene:
    """An image, its objects ordered left to right by box centre, and its caption."""

    width: int
    height: int
    objects: tuple[ShapeObject, ...]
    caption: str
    image: Image.Image | None  # None once only the labels are kept (see write_shapes)


def image_name(seed: int, index: int) -> str:
    """The file name of image `index`, the join key between inputs, outputs and ground truth."""
    return f"shapes-{seed}-{index:06d}.png"


def caption_for(objects: Sequence[ShapeObject]) -> str:
    """'a red circle', 'a red circle and a blue square', 'a, b and c', in the given order."""
    phrases = [f"a {obj.color} {obj.category}" for obj in objects]
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """True when two inclusive boxes (x0, y0, x1, y1) are at least _MARGIN pixels apart."""
    return a[2] + _MARGIN < b[0] or b[2] + _MARGIN < a[0] or a[3] + _MARGIN < b[1] or b[3] + _MARGIN < a[1]


def _place_boxes(rng: np.random.Generator, width: int, height: int, wanted: int) -> list[tuple[int, int, int, int]]:
    """Up to `wanted` non-overlapping square boxes by rejection sampling; fewer when they do not fit."""
    short = min(width, height)
    low, high = (round(short * f) for f in _SHAPE_SCALE)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(wanted):
        for _ in range(_PLACEMENT_TRIES):
            side = int(rng.integers(low, high + 1))
            x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            box = (x0, y0, x0 + side - 1, y0 + side - 1)
            if all(_apart(box, other) for other in boxes):
                boxes.append(box)
                break
    return boxes


def _shape_mask(category: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """The shape filling `box`, drawn without anti-aliasing on an "L" image (255 inside, 0 outside)."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    if category == "circle":
        draw.ellipse(box, fill=255)
    elif category == "square":
        draw.rectangle(box, fill=255)
    else:  # triangle, apex up
        draw.polygon([((x0 + x1) // 2, y0), (x0, y1), (x1, y1)], fill=255)
    return mask


def _tight_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """COCO [x, y, w, h] of the True pixels: min column/row to max column/row + 1."""
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1] + 1 - cols[0]), int(rows[-1] + 1 - rows[0])


def _background(rng: np.random.Generator, width: int, height: int, noise: int) -> Image.Image:
    """A light uniform colour, plus uniform per-pixel noise of +-`noise` levels when asked."""
    pixels = np.broadcast_to(rng.integers(*_BACKGROUND, endpoint=True, size=3), (height, width, 3))
    if noise:
        pixels = pixels + rng.integers(-noise, noise, endpoint=True, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def draw_scene(rng: np.random.Generator, size_range: tuple[int, int] = SIZE_RANGE, noise: int = 0) -> Scene:
    """One image of 1 to 3 non-overlapping shapes and its exact ground truth.

    Width and height are drawn independently from `size_range` (inclusive). Each shape's mask is
    drawn once and its colour pasted through it, so mask and pixels agree exactly.
    """
    width, height = (int(v) for v in rng.integers(size_range[0], size_range[1], endpoint=True, size=2))
    image = _background(rng, width, height, noise)
    objects = []
    for box in _place_boxes(rng, width, height, int(rng.integers(1, _MAX_SHAPES, endpoint=True))):
        category, color = SHAPES[rng.integers(len(SHAPES))], list(COLORS)[rng.integers(len(COLORS))]
        mask_image = _shape_mask(category, box, (width, height))
        image.paste(COLORS[color], mask=mask_image)
        mask = np.asarray(mask_image) > 0
        objects.append(ShapeObject(category, color, _tight_bbox(mask), Rle.from_binary(mask), int(mask.sum())))
    objects.sort(key=lambda obj: obj.bbox[0] + obj.bbox[2] / 2)  # stable: ties keep drawing order
    return Scene(width, height, tuple(objects), caption_for(objects), image)


def coco_ground_truth(scenes: Sequence[Scene], names: Sequence[str], info: dict) -> dict:
    """COCO detection/segmentation ground truth, plus a `color` per annotation and a `captions` list."""
    images, annotations, captions = [], [], []
    for image_id, (scene, name) in enumerate(zip(scenes, names, strict=True), start=1):
        images.append({"id": image_id, "file_name": name, "width": scene.width, "height": scene.height})
        captions.append({"image_id": image_id, "caption": scene.caption})
        for obj in scene.objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": SHAPES.index(obj.category) + 1,
                "bbox": list(obj.bbox), "area": obj.area,
                "segmentation": {"size": list(obj.rle.size), "counts": obj.rle.counts},
                "iscrowd": 0, "color": obj.color,
            })
    categories = [{"id": i, "name": name} for i, name in enumerate(SHAPES, start=1)]
    return {"info": info, "images": images, "categories": categories, "annotations": annotations,
            "captions": captions}


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding (deterministic: no timestamps or metadata)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tar(handle, members: Sequence[tuple[str, bytes]]) -> None:
    """A WebDataset shard: one member per sample, fixed metadata so the bytes depend on content only."""
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def _write_shard(filesystem, root: str, fmt: str, seed: int, shard: int, members: list[tuple[str, bytes]]) -> int:
    """Write one shard's images in `fmt`; returns how many files that took."""
    if fmt == "images":
        filesystem.makedirs(f"{root}/images", exist_ok=True)
        for name, data in members:
            with filesystem.open(f"{root}/images/{name}", "wb") as handle:
                handle.write(data)
        return len(members)
    folder, ext = ("shards", "tar") if fmt == "webdataset" else ("parquet", "parquet")
    filesystem.makedirs(f"{root}/{folder}", exist_ok=True)
    with filesystem.open(f"{root}/{folder}/shapes-{seed}-{shard:05d}.{ext}", "wb") as handle:
        if fmt == "webdataset":
            _write_tar(handle, members)
        else:
            names, images = zip(*members)
            table = pa.table({"image": pa.array(images, pa.binary()), "uri": pa.array(names, pa.string())})
            pq.write_table(table, handle)
    return 1


def write_shapes(output: str, count: int, seed: int, fmt: str = "images", shard_size: int = 100,
                 size_range: tuple[int, int] = SIZE_RANGE, noise: int = 0, overwrite: bool = False) -> dict:
    """Draw `count` scenes and write them in `fmt` under `output`, with `output/ground_truth.json`.

    Image i is drawn from `default_rng([seed, i])`, so it depends only on the seed and its index
    (a larger count adds images without changing the first ones). Images are written one shard
    at a time and only their labels are kept, so memory does not grow with the pixels.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if count < 1 or shard_size < 1 or seed < 0 or noise < 0:
        raise ValueError("count and shard size must be positive, seed and noise non-negative")
    if not 16 <= size_range[0] <= size_range[1]:
        raise ValueError(f"size range must be 16 <= min <= max pixels, got {list(size_range)}")
    filesystem, root = prepare_output(output, overwrite)
    root = root.rstrip("/")
    names = [image_name(seed, i) for i in range(count)]
    labels, files = [], 0
    for shard, start in enumerate(range(0, count, shard_size)):
        scenes = [draw_scene(np.random.default_rng([seed, i]), size_range, noise)
                  for i in range(start, min(start + shard_size, count))]
        members = [(names[start + k], png_bytes(scene.image)) for k, scene in enumerate(scenes)]
        files += _write_shard(filesystem, root, fmt, seed, shard, members)
        labels += [dataclasses.replace(scene, image=None) for scene in scenes]
    info = {"description": "Synthetic shapes: circles, squares and triangles in four colours on light "
                           "backgrounds; COCO boxes, RLE masks and captions.",
            "seed": seed, "count": count, "format": fmt, "size_range": list(size_range), "noise": noise}
    with filesystem.open(f"{root}/{GROUND_TRUTH_FILE}", "w") as handle:
        json.dump(coco_ground_truth(labels, names, info), handle)
    return {"images": count, "objects": sum(len(s.objects) for s in labels), "files": files, "format": fmt,
            "output": filesystem.unstrip_protocol(root)}
