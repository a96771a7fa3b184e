import pytest

from pipelines.geometry import box_xyxy_px_to_loc_yxyx_1024, loc_yxyx_1024_to_box_xyxy_px


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
