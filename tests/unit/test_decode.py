"""Decoding: orientation, colour modes, sizes and per-row errors."""

import numpy as np
import pytest

from pipelines.decode import decode_batch, decode_image
from schemas import columns as C
from tests.images import encode, solid, with_exif_orientation

BICUBIC = 3


def test_resizes_to_a_square_uint8_and_reports_the_original_size():
    pixels, image_wh = decode_image(encode(solid(64, 16), "PNG"), 32, BICUBIC)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert image_wh == (64, 16)
    assert tuple(pixels[16, 16]) == (200, 30, 30)


def test_exif_rotation_gives_the_displayed_size_and_orientation():
    # Stored 40 wide x 20 high with the left half red; orientation 6 displays it 20 x 40, red on top.
    stored = solid(40, 20, (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    pixels, image_wh = decode_image(with_exif_orientation(stored, 6), 32, BICUBIC)
    assert image_wh == (20, 40)
    top, bottom = pixels[4, 16], pixels[28, 16]
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize(
    "image, fmt",
    [
        (solid(10, 10, 128, mode="L"), "PNG"),  # grayscale
        (solid(10, 10, (1, 2, 3)).convert("P"), "PNG"),  # palette
        (solid(10, 10, (0, 0, 0, 255), mode="RGBA"), "PNG"),  # alpha
        (solid(10, 10, (0, 50, 100, 0), mode="CMYK"), "JPEG"),  # CMYK JPEG
        (solid(10, 10), "GIF"),
        (solid(10, 10), "BMP"),
        (solid(10, 10), "TIFF"),
        (solid(10, 10), "WEBP"),
    ],
)
def test_any_mode_becomes_rgb(image, fmt):
    pixels, image_wh = decode_image(encode(image, fmt), 8, BICUBIC)
    assert pixels.shape == (8, 8, 3) and image_wh == (10, 10)


def test_transparent_pixels_become_white():
    pixels, _ = decode_image(encode(solid(4, 4, (0, 0, 0, 0), mode="RGBA"), "PNG"), 4, BICUBIC)
    assert (pixels == 255).all()


def test_a_bad_row_keeps_its_place_with_an_error():
    batch = {
        C.IMAGE_ID: np.array(["a", "b", "c", "d"], dtype=object),
        C.SOURCE_URI: np.array(["ua", "ub", "uc", "ud"], dtype=object),
        C.QUESTION: np.array(["", "", "", ""], dtype=object),
        C.IMAGE_BYTES: np.array([encode(solid(5, 7), "PNG"), b"not an image", b"",
                                 encode(solid(9, 3), "JPEG")[:40]], dtype=object),
    }
    out = decode_batch(batch, 8, BICUBIC)
    assert list(out[C.IMAGE_ID]) == ["a", "b", "c", "d"]
    assert list(out[C.WIDTH]) == [5, 0, 0, 0] and list(out[C.HEIGHT]) == [7, 0, 0, 0]
    assert out[C.ERROR][0] == ""
    assert out[C.ERROR][1].startswith("UnidentifiedImageError")
    assert out[C.ERROR][2].startswith("no image data")
    assert out[C.ERROR][3]  # truncated JPEG: PIL's error text varies by version
    assert out[C.PIXELS].shape == (4, 8, 8, 3)
