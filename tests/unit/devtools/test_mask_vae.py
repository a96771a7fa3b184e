"""The shapes VQ-VAE: masks in, codewords out, and a file the pipeline's decoder loads unchanged."""

import numpy as np
import torch

from pipelines.devtools.mask_vae import MaskVae, mask_in_box, save_vae, train_mask_vae
from pipelines.devtools.shapes import draw_scene
from pipelines.model.mask_decoder import decode_masks, load_mask_decoder


def shape_masks(count: int) -> np.ndarray:
    scenes = [draw_scene(np.random.default_rng([5, i])) for i in range(count)]
    return np.stack([mask_in_box(o.rle.to_binary(), o.bbox) for s in scenes for o in s.objects])


def test_mask_in_box_crops_to_the_box_and_fills_64_pixels():
    mask = np.zeros((40, 100), bool)
    mask[10:30, 20:60] = True  # a rectangle filling its box
    assert (mask_in_box(mask, (20, 10, 40, 20)) == 1).all()
    left_half = mask_in_box(mask, (20, 10, 80, 20))  # box twice as wide: the left half is set
    assert left_half.shape == (64, 64) and left_half[:, :31].all() and not left_half[:, 33:].any()


def test_encode_gives_16_codewords_in_range():
    codes = MaskVae(embedding_dim=8).encode(shape_masks(4))
    assert codes.shape[1] == 16 and codes.dtype == np.int64 and 0 <= codes.min() and codes.max() < 128


def test_saved_file_loads_in_the_pipeline_and_decodes_the_same(tmp_path):
    vae, log = train_mask_vae(shape_masks(10), steps=3, batch_size=4, embedding_dim=8, log_every=0)
    assert log["steps"] == 3
    decoder = load_mask_decoder(str(save_vae(vae, tmp_path / "vae-oid.npz")))  # strict: every name and shape
    codes = np.array([[3] * 16, list(range(16))])
    with torch.no_grad():
        expected = vae.decoder(torch.as_tensor(codes)).numpy()
    np.testing.assert_array_equal(decode_masks(decoder, codes), expected)
