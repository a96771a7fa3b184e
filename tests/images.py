"""Small helpers that make real image files for tests."""

from __future__ import annotations

import io

from PIL import Image


def encode(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def solid(width: int, height: int, colour=(200, 30, 30), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, (width, height), colour)


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    """A JPEG whose EXIF says how to rotate it for display (6: rotate 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes())
