"""Pure coordinate conversions and mask placement. Suffixes name order and units: `loc_yxyx_1024`,
`box_xyxy_px`, `image_wh`."""

from __future__ import annotations

import numpy as np
from PIL import Image

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
    """Inverse of `loc_yxyx_1024_to_box_xyxy_px`: the nearest bin, clipped to [0, 1023] (a box
    reaching the far edge, bin 1024, gets the last token). Training targets are written with it."""
    width, height = image_wh
    x_min, y_min, x_max, y_max = box_xyxy_px

    def to_bin(value: float, size: int) -> int:
        return min(LOC_BINS - 1, max(0, round(value / size * LOC_BINS)))

    return (to_bin(y_min, height), to_bin(x_min, width), to_bin(y_max, height), to_bin(x_max, width))


def box_xyxy_px_to_pixel_span(
    box_xyxy_px: tuple[float, float, float, float], image_wh: tuple[int, int]
) -> tuple[int, int, int, int]:
    """The whole pixels a box covers, [x0, x1) x [y0, y1): edges rounded (as the big_vision HF
    space does) and clipped to the image. The span may be empty for a box under a pixel wide."""
    width, height = image_wh
    x_min, y_min, x_max, y_max = box_xyxy_px
    x0, x1 = (min(width, max(0, round(v))) for v in (x_min, x_max))
    y0, y1 = (min(height, max(0, round(v))) for v in (y_min, y_max))
    return x0, y0, x1, y1


def place_mask(
    mask_logits: np.ndarray, box_xyxy_px: tuple[float, float, float, float], image_wh: tuple[int, int]
) -> np.ndarray:
    """Stretch a decoder mask (any square, logits in [-1, 1]) over its box on the original image.

    As big_vision's segmentation evaluator: bilinear resize of the float mask to the box's pixel
    size, then `> 0`. Returns a (height, width) boolean array, False outside the box.
    """
    width, height = image_wh
    x0, y0, x1, y1 = box_xyxy_px_to_pixel_span(box_xyxy_px, image_wh)
    placed = np.zeros((height, width), dtype=bool, order="F")  # COCO RLE runs down columns
    if x1 > x0 and y1 > y0:
        logits = Image.fromarray(np.asarray(mask_logits, dtype=np.float32), mode="F")
        resized = np.asarray(logits.resize((x1 - x0, y1 - y0), resample=Image.Resampling.BILINEAR))
        placed[y0:y1, x0:x1] = resized > 0.0
    return placed
