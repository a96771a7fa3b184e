"""Small helpers that make real image files for tests."""

from __future__ import annotations

import io
import zlib

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


def png_claiming_size(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims `width` x `height` (a decompression bomb's shape): its IHDR
    chunk is rewritten, CRC included, while the compressed data stays that of a 1x1 image."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr:ihdr + 8] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[ihdr + 13:ihdr + 17] = zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])).to_bytes(4, "big")
    return bytes(data)


def animated_gif(colours: list[tuple[int, int, int]], size: tuple[int, int] = (12, 8)) -> bytes:
    """A GIF with one solid frame per colour."""
    frames = [Image.new("RGB", size, colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
