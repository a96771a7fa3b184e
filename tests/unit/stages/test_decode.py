"""Decoding: orientation, colour modes, sizes and per-row errors."""

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from pipelines.stages.decode import ImageTooLargeError, decode_batch, decode_image, open_displayed
from schemas import columns as C
from schemas.job import DEFAULT_MAX_IMAGE_PIXELS
from tests.images import animated_gif, encode, png_claiming_size, solid, with_exif_orientation

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


def test_16_bit_samples_keep_their_brightness():
    # 16-bit grey 0x8000 (mid grey) must not be clipped to white by the 8-bit conversion.
    image = Image.fromarray(np.full((6, 6), 0x8000, dtype=np.uint16))
    assert image.mode.startswith("I;16")
    pixels, image_wh = decode_image(encode(image, "PNG"), 4, BICUBIC)
    assert image_wh == (6, 6) and (pixels == 0x80).all()


def test_an_animated_gif_gives_its_first_frame():
    pixels, image_wh = decode_image(animated_gif([(250, 0, 0), (0, 0, 250)]), 4, BICUBIC)
    assert image_wh == (12, 8)
    assert pixels[..., 0].min() > 200 and pixels[..., 2].max() < 50


def test_a_one_pixel_image_decodes():
    pixels, image_wh = decode_image(encode(solid(1, 1, (10, 20, 30)), "PNG"), 4, BICUBIC)
    assert image_wh == (1, 1) and tuple(pixels[2, 2]) == (10, 20, 30)


def test_a_decompression_bomb_is_refused_from_its_header():
    # 100,000 x 100,000 claimed: decoding it would need 30 GB; the header check refuses it at once.
    bomb = png_claiming_size(100_000, 100_000)
    assert len(bomb) < 100
    with pytest.raises(ImageTooLargeError, match="100000x100000 = 10,000,000,000 pixels"):
        decode_image(bomb, 8, BICUBIC)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS  # PIL's own guard is put back


def test_the_pixel_limit_is_the_jobs():
    data = encode(solid(20, 10), "PNG")
    assert decode_image(data, 4, BICUBIC, max_pixels=200)[1] == (20, 10)
    with pytest.raises(ImageTooLargeError, match="over the limit of 199"):
        decode_image(data, 4, BICUBIC, max_pixels=199)
    # Over PIL's own guard (which raises at twice its limit) but within ours: the header passes, and
    # decoding then fails on the data, which holds one pixel, not on a size limit.
    claimed = png_claiming_size(15_000, 15_000)
    with pytest.raises(Exception) as raised:
        decode_image(claimed, 4, BICUBIC, max_pixels=10**9)
    assert not isinstance(raised.value, (ImageTooLargeError, Image.DecompressionBombError))


def test_only_the_listed_formats_are_opened():
    # PIL would open an EPS (through Ghostscript) or a PPM; the pipeline reads no such files, so it refuses them.
    for image, fmt in [(solid(4, 4), "PPM"), (solid(4, 4), "ICO")]:
        with pytest.raises(UnidentifiedImageError):
            decode_image(encode(image, fmt), 4, BICUBIC)


def gradient(width: int, height: int) -> Image.Image:
    """A smooth photo-like image (JPEG's DCT scaling is exact on flat colour, so test on something else)."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    return Image.fromarray(np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2 + 0 * x], axis=2).astype(np.uint8))


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_with_its_full_size_reported():
    data = encode(gradient(2000, 1200), "JPEG", quality=90)
    drafted, drafted_wh, _ = open_displayed(data, at_least=448)
    assert drafted.size == (1000, 600) and drafted_wh == (2000, 1200)  # 1/2 scale: both sides still >= 448
    assert open_displayed(data, at_least=224)[0].size == (500, 300)  # 1/4: 1/8 would leave 150 < 224
    fast, fast_wh = decode_image(data, 224, BICUBIC)
    full, full_wh = decode_image(data, 224, BICUBIC, jpeg_draft=False)
    assert fast_wh == full_wh == (2000, 1200)
    assert np.abs(fast.astype(int) - full.astype(int)).mean() < 1.0  # levels of 255


def test_a_rotated_big_jpeg_reports_its_displayed_size_whatever_the_scale():
    data = with_exif_orientation(gradient(1800, 1000), 6)
    assert decode_image(data, 224, BICUBIC)[1] == decode_image(data, 224, BICUBIC, jpeg_draft=False)[1] == (1000, 1800)
    drafted, drafted_wh, _ = open_displayed(data, at_least=448)
    assert drafted.size == (500, 900) and drafted_wh == (1000, 1800)


def test_other_formats_and_small_jpegs_are_decoded_whole():
    png = encode(gradient(2000, 1200), "PNG")
    assert open_displayed(png, at_least=224)[0].size == (2000, 1200)
    small = encode(gradient(600, 400), "JPEG")
    assert open_displayed(small, at_least=448)[0].size == (600, 400)  # half would leave 200 < 448


def shapes_photo(width: int, height: int) -> Image.Image:
    """Sharp-edged shapes on a gradient: where a picture shifted by a fraction of a pixel shows."""
    image = gradient(width, height)
    image.paste((250, 20, 20), (width // 5, height // 4, width // 2, height // 2))
    image.paste((20, 20, 250), (width // 2, height // 2, 4 * width // 5, 9 * height // 10))
    return image


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_reduced_jpeg_resizes_to_the_full_decodes_pixels_in_every_orientation(orientation):
    # 1001 x 603 does not divide by the scale: the reduced image ends in a partly padded row and column,
    # which the resize leaves out wherever the EXIF turn puts them.
    stored = shapes_photo(1001, 603)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    full, full_wh = decode_image(data, 64, BICUBIC, jpeg_draft=False)
    fast, fast_wh = decode_image(data, 64, BICUBIC)
    assert open_displayed(data, at_least=128).image.size in ((251, 151), (151, 251))  # decoded at 1/4
    diff = np.abs(full.astype(int) - fast.astype(int))
    assert fast_wh == full_wh and diff.mean() < 0.5 and diff.max() <= 8, (diff.mean(), diff.max())
