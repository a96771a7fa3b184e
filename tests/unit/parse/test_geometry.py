import numpy as np
import pytest

from pipelines.parse.geometry import (
    box_xyxy_px_to_loc_yxyx_1024,
    box_xyxy_px_to_pixel_span,
    loc_yxyx_1024_to_box_xyxy_px,
    place_mask,
)


def test_bins_scale_y_by_height_and_x_by_width():
    # (y_min, x_min, y_max, x_max) = (256, 512, 768, 1000) on a 640 x 480 (w x h) image
    assert loc_yxyx_1024_to_box_xyxy_px((256, 512, 768, 1000), (640, 480)) == (320.0, 120.0, 625.0, 360.0)


def test_extreme_bins_stay_inside_the_image():
    assert loc_yxyx_1024_to_box_xyxy_px((0, 0, 1023, 1023), (1024, 512)) == (0.0, 0.0, 1023.0, 511.5)


@pytest.mark.parametrize("image_wh", [(0, 10), (10, 0), (-1, 5)])
def test_non_positive_image_size_is_refused(image_wh):
    with pytest.raises(ValueError):
        loc_yxyx_1024_to_box_xyxy_px((0, 0, 1, 1), image_wh)


@pytest.mark.parametrize("image_wh", [(640, 480), (37, 1001), (1, 1), (4000, 3000)])
@pytest.mark.parametrize("loc", [(0, 0, 1023, 1023), (17, 900, 18, 901), (512, 3, 700, 1000)])
def test_loc_to_px_to_loc_round_trip(loc, image_wh):
    assert box_xyxy_px_to_loc_yxyx_1024(loc_yxyx_1024_to_box_xyxy_px(loc, image_wh), image_wh) == loc


def test_a_box_covers_its_rounded_pixel_span_clipped_to_the_image():
    assert box_xyxy_px_to_pixel_span((10.2, 5.5, 30.6, 14.4), (40, 20)) == (10, 6, 31, 14)
    assert box_xyxy_px_to_pixel_span((-3, 0, 50.7, 20), (40, 20)) == (0, 0, 40, 20)
    assert box_xyxy_px_to_pixel_span((3.1, 3.1, 3.4, 3.4), (40, 20)) == (3, 3, 3, 3)  # under a pixel: empty


def test_a_mask_is_stretched_over_its_box_and_thresholded_at_zero():
    logits = np.full((64, 64), -1.0, np.float32)
    logits[:, 32:] = 1.0  # right half of the object
    placed = place_mask(logits, (10.2, 5, 30.6, 15), (40, 20))
    assert placed.shape == (20, 40) and placed.dtype == bool
    # span x 10..31 (21 px) and y 5..15: bilinear keeps the right ~half, columns 20..30
    assert np.argwhere(placed).min(0).tolist() == [5, 20] and np.argwhere(placed).max(0).tolist() == [14, 30]
    assert placed.sum() == 10 * 11
    assert not place_mask(logits, (3.1, 3.1, 3.4, 3.4), (40, 20)).any()


def test_a_mask_follows_the_logits_shape_on_a_large_box():
    logits = -np.ones((64, 64), np.float32)
    logits[16:48, 16:48] = 1  # centre quarter of the box
    placed = place_mask(logits, (0, 0, 640, 320), (640, 480))
    rows, cols = np.nonzero(placed)
    assert abs(rows.min() - 80) <= 3 and abs(rows.max() - 239) <= 3
    assert abs(cols.min() - 160) <= 6 and abs(cols.max() - 479) <= 6
    assert not placed[320:].any()
