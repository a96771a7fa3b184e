"""Label Studio's brush RLE, written with NumPy: byte for byte what label-studio-sdk's own encoder writes."""

import numpy as np

from pipelines.review.export.brush import mask_to_brush_rle


def test_brush_rle_is_byte_for_byte_label_studios_own_encoding(brush):
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (3, 5), (40, 30), (300, 500)]:
        for density in (0.0, 0.01, 0.5, 1.0):
            mask = rng.random(shape) < density
            assert mask_to_brush_rle(mask) == brush.mask2rle(mask.astype(np.uint8) * 255)
    # a run longer than 65,536 elements is cut into chunks the same way
    mask = np.zeros((300, 400), bool)
    mask[:200] = True
    assert mask_to_brush_rle(mask) == brush.mask2rle(mask.astype(np.uint8) * 255)
    round_trip = brush.decode_rle(mask_to_brush_rle(mask)).reshape(300, 400, 4)[:, :, 3]
    np.testing.assert_array_equal(round_trip > 0, mask)
