"""Pure coordinate conversions. Suffixes name order and units: `loc_yxyx_1024`, `box_xyxy_px`, `image_wh`."""

from __future__ import annotations

# PaliGemma quantises each coordinate into 1024 bins. We decode with /1024, as Google's model card,
# the big_vision HF space and supervision do (big_vision's own evaluator uses /1023: <= 0.1% apart).
LOC_BINS = 1024


def loc_yxyx_1024_to_box_xyxy_px(
    loc_yxyx_1024: tuple[int, int, int, int], image_wh: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Map PaliGemma's (y_min, x_min, y_max, x_max) bins onto the original image, in pixels.

    The model sees the image squashed to a square (no letterbox), so y scales with the original
    height and x with the original width, whatever the aspect ratio.
    """
    width, height = image_wh
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {image_wh}")
    y_min, x_min, y_max, x_max = loc_yxyx_1024
    return (
        x_min / LOC_BINS * width,
        y_min / LOC_BINS * height,
        x_max / LOC_BINS * width,
        y_max / LOC_BINS * height,
    )


def box_xyxy_px_to_loc_yxyx_1024(
    box_xyxy_px: tuple[float, float, float, float], image_wh: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Inverse of `loc_yxyx_1024_to_box_xyxy_px` (floor to the bin), clipped to [0, 1023]."""
    width, height = image_wh
    x_min, y_min, x_max, y_max = box_xyxy_px

    def to_bin(value: float, size: int) -> int:
        return min(LOC_BINS - 1, max(0, int(value / size * LOC_BINS + 1e-9)))

    return (to_bin(y_min, height), to_bin(x_min, width), to_bin(y_max, height), to_bin(x_max, width))
