"""Encoded bytes -> RGB uint8 at the model's resolution, plus the original size. Runs on CPU workers."""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Iterator, NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps

from pipelines.stages.contract import Rows, StageContract, describe_error
from schemas import columns as C
from schemas.job import DEFAULT_MAX_IMAGE_PIXELS

# The formats of the extensions the readers list (read.IMAGE_EXTENSIONS). Naming them keeps PIL from trying
# its other plugins on whatever bytes arrive (its EPS plugin, for one, hands the data to Ghostscript).
DECODED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
# A JPEG is decoded inside its DCT at 1/2, 1/4 or 1/8 scale, the smallest that leaves both sides at least
# this many times the model's resolution: a 12 MP photo then costs a fraction of a full decode, and the
# bicubic resize that follows still reduces by 2x or more (docs/performance.md, "Decoding big images").
JPEG_DRAFT_FACTOR = 2
# EXIF orientations that swap width and height (transposed, rotated by 90 or 270 degrees).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


class DisplayedImage(NamedTuple):
    """A decoded image as displayed. `region` is the part of `image` that shows the whole picture, in its
    pixels: a reduced-scale JPEG is rounded up to whole pixels, its last row and column only partly
    picture, and resizing that region (not the whole image) keeps the picture where a full decode has it."""

    image: Image.Image
    size: tuple[int, int]  # (width, height) displayed at full scale: the frame boxes are reported in
    region: tuple[float, float, float, float] | None = None  # None: all of `image`


def _picture_region(orientation: int, displayed: tuple[int, int],
                    picture: tuple[float, float]) -> tuple[float, float, float, float]:
    """Where a reduced JPEG's picture (`picture`: its width and height as stored, before the EXIF turn)
    lies in the displayed image: the padding that was at the stored right and bottom moves with the turn."""
    (dw, dh), (pw, ph) = displayed, picture
    return {2: (dw - pw, 0, dw, ph), 3: (dw - pw, dh - ph, dw, dh), 4: (0, dh - ph, pw, dh),
            5: (0, 0, ph, pw), 6: (dw - ph, 0, dw, pw), 7: (dw - ph, dh - pw, dw, dh),
            8: (0, dh - pw, ph, dh)}.get(orientation, (0, 0, pw, ph))


CONTRACT = StageContract("decode", reads=(C.IMAGE_BYTES,), writes=(C.PIXELS, C.WIDTH, C.HEIGHT, C.ERROR),
                         rows=Rows.ONE_TO_ONE, drops=(C.IMAGE_BYTES,))


class ImageTooLargeError(ValueError):
    """The header declares more pixels than the job allows (a decompression bomb, or just too big)."""


def decode_image(
    data: bytes, size: int, resample: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, jpeg_draft: bool = True
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode as displayed (`displayed_image`) and resize to size x size; with `jpeg_draft`, a big
    JPEG is decoded at a reduced scale first (`JPEG_DRAFT_FACTOR`).

    Returns:
        (pixels, image_wh): uint8 array (size, size, 3) and the original (width, height) after
        EXIF rotation, which is the frame boxes are reported in, whatever scale was decoded.
    """
    image, image_wh, region = open_displayed(data, max_pixels, size * JPEG_DRAFT_FACTOR if jpeg_draft else None)
    return to_model_pixels(image, size, resample, region), image_wh


@contextlib.contextmanager
def _pil_guard_off() -> Iterator[None]:
    """PIL's bomb guard is one process-wide limit; ours is per job, so PIL's is lifted while we open."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def displayed_image(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Encoded bytes -> the RGB image as displayed, at full size: see `open_displayed`."""
    return open_displayed(data, max_pixels).image


def open_displayed(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                   at_least: int | None = None) -> DisplayedImage:
    """Encoded bytes -> the RGB image as displayed: EXIF orientation applied, transparency on white,
    16-bit samples scaled to 8 (an animated image gives its first frame), and its displayed (width,
    height) at full size. With `at_least`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8)
    that leaves both sides at least `at_least` pixels, so the image may be smaller than that size, and
    `region` says which part of it holds the picture.

    Raises ImageTooLargeError, from the header alone (before any pixel is decoded), when the image
    has more than `max_pixels` pixels.
    """
    with _pil_guard_off():
        image = Image.open(io.BytesIO(data), formats=DECODED_FORMATS)
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(f"{width}x{height} = {width * height:,} pixels, over the limit of "
                                     f"{max_pixels:,} (--max-image-pixels)")
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        displayed_wh = (height, width) if orientation in _SWAPPING_ORIENTATIONS else (width, height)
        picture = None
        if at_least and image.format == "JPEG":
            image.draft(image.mode, (at_least, at_least))  # picks the scale before any pixel is decoded
            scale = width / image.size[0] if image.size != (width, height) else None
            picture = (width / round(scale), height / round(scale)) if scale else None
        image = ImageOps.exif_transpose(image)
        if image.mode.startswith("I;16") or image.mode == "I":
            # PIL's convert("RGB") clips 16-bit values at 255 (a white image); keep the top 8 bits instead.
            image = Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8))
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparency onto white: dropping alpha would expose whatever colour the
            # transparent pixels happen to hold.
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        region = _picture_region(orientation, image.size, picture) if picture else None
        return DisplayedImage(image.convert("RGB"), displayed_wh, region)


def to_model_pixels(image: Image.Image, size: int, resample: int,
                    region: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """RGB uint8 (size, size, 3): the image (or its `region`) squashed to a square (no letterbox), as
    PaliGemma was trained. Training on synthetic images goes through here too, so it sees what the
    pipeline sees."""
    return np.asarray(image.convert("RGB").resize((size, size), resample=resample, box=region), dtype=np.uint8)


def decode_rows(
    batch: dict[str, np.ndarray], size: int, resample: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    jpeg_draft: bool = True,
) -> dict[str, np.ndarray]:
    """Decode every row; a row that fails keeps its place with a zero image and an error. The
    encoded bytes are dropped; every other column passes on."""
    n = len(batch[C.IMAGE_BYTES])
    pixels = np.zeros((n, size, size, 3), dtype=np.uint8)
    widths = np.zeros(n, dtype=np.int64)
    heights = np.zeros(n, dtype=np.int64)
    errors = np.full(n, "", dtype=object)
    for i, data in enumerate(batch[C.IMAGE_BYTES]):
        if not data:
            errors[i] = "no image data (empty file, null bytes or no image member)"
            continue
        try:
            pixels[i], (widths[i], heights[i]) = decode_image(bytes(data), size, resample, max_pixels, jpeg_draft)
        except Exception as err:  # any decoder failure is this image's problem, not the job's
            errors[i] = describe_error(err)
    return {**C.carry(batch, drop=(C.IMAGE_BYTES,)),
            C.PIXELS: pixels, C.WIDTH: widths, C.HEIGHT: heights, C.ERROR: errors}


def decode_batch(
    batch: dict[str, np.ndarray], size: int, resample: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    jpeg_draft: bool = True,
) -> dict[str, np.ndarray]:
    """`decode_rows` checked against the stage's contract: the pipeline step."""
    return CONTRACT.run(lambda rows: decode_rows(rows, size, resample, max_pixels, jpeg_draft), batch)
