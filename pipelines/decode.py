"""Encoded bytes -> RGB uint8 at the model's resolution, plus the original size. Runs on CPU workers."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from schemas import columns as C

MAX_ERROR_CHARS = 500


def describe_error(err: BaseException) -> str:
    """`Type: message`, truncated, as stored in the `error` column."""
    return f"{type(err).__name__}: {err}"[:MAX_ERROR_CHARS]


def decode_image(data: bytes, size: int, resample: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode as displayed (`displayed_image`) and resize to size x size.

    Returns:
        (pixels, image_wh): uint8 array (size, size, 3) and the original (width, height) after
        EXIF rotation, which is the frame boxes are reported in.
    """
    image = displayed_image(data)
    return to_model_pixels(image, size, resample), image.size


def displayed_image(data: bytes) -> Image.Image:
    """Encoded bytes -> the RGB image as displayed: EXIF orientation applied, transparency on white."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparency onto white: dropping alpha would expose whatever colour the
            # transparent pixels happen to hold.
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        return image.convert("RGB")


def to_model_pixels(image: Image.Image, size: int, resample: int) -> np.ndarray:
    """RGB uint8 (size, size, 3): the image squashed to a square (no letterbox), as PaliGemma was
    trained. Training on synthetic images goes through here too, so it sees what the pipeline sees."""
    return np.asarray(image.convert("RGB").resize((size, size), resample=resample), dtype=np.uint8)


def decode_batch(batch: dict[str, np.ndarray], size: int, resample: int) -> dict[str, np.ndarray]:
    """Decode every row; a row that fails keeps its place with a zero image and an error."""
    n = len(batch[C.IMAGE_ID])
    pixels = np.zeros((n, size, size, 3), dtype=np.uint8)
    widths = np.zeros(n, dtype=np.int64)
    heights = np.zeros(n, dtype=np.int64)
    errors = np.full(n, "", dtype=object)
    for i, data in enumerate(batch[C.IMAGE_BYTES]):
        if not data:
            errors[i] = "no image data (empty file, null bytes or no image member)"
            continue
        try:
            pixels[i], (widths[i], heights[i]) = decode_image(bytes(data), size, resample)
        except Exception as err:  # any decoder failure is this image's problem, not the job's
            errors[i] = describe_error(err)
    return {
        C.IMAGE_ID: batch[C.IMAGE_ID],
        C.SOURCE_URI: batch[C.SOURCE_URI],
        C.QUESTION: batch[C.QUESTION],
        C.PIXELS: pixels,
        C.WIDTH: widths,
        C.HEIGHT: heights,
        C.ERROR: errors,
    }
