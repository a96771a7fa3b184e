"""The VQ-VAE mask decoder: the published file layout, loading rules, and big_vision's outputs."""

import pickle
from pathlib import Path

import numpy as np
import pytest

from pipelines.devtools.tiny_model import random_vae_arrays, save_random_vae
from pipelines.model.checkpoint import VaeLoadError, find_vae, missing_vae_message
from pipelines.model.mask_decoder import decode_masks, load_mask_decoder

GOLDEN = Path(__file__).parents[2] / "data" / "big_vision_mask_decoder.npz"


def published_layout(width: int) -> dict[str, tuple[int, ...]]:
    """The arrays big_vision's `_get_params` reads from vae-oid.npz, in PyTorch layout, written
    out by hand from its definition (not from our module), so the two are checked against each other."""
    def conv(name, out_channels, in_channels, kernel):
        return {f"{name}.weight": (out_channels, in_channels, kernel, kernel), f"{name}.bias": (out_channels,)}

    def up(name, in_channels, out_channels):  # PyTorch stores a transposed conv as (in, out, k, k)
        return {f"{name}.weight": (in_channels, out_channels, 4, 4), f"{name}.bias": (out_channels,)}

    layout = {"_vq_vae._embedding": (128, width), **conv("decoder.0", 128, width, 1)}
    for block in ("decoder.2.net", "decoder.3.net"):
        layout |= conv(f"{block}.0", 128, 128, 3) | conv(f"{block}.2", 128, 128, 3) | conv(f"{block}.4", 128, 128, 1)
    layout |= up("decoder.4", 128, 128) | up("decoder.6", 128, 64) | up("decoder.8", 64, 32) | up("decoder.10", 32, 16)
    return layout | conv("decoder.12", 1, 16, 1)


def test_the_random_file_has_exactly_the_published_names_and_shapes(tmp_path):
    path = save_random_vae(tmp_path / "vae-oid.npz", embedding_dim=8)
    with np.load(path, allow_pickle=False) as npz:
        assert {name: npz[name].shape for name in npz.files} == published_layout(8)


@pytest.mark.parametrize("width", [8, 64])
def test_the_codebook_width_is_read_from_the_file(tmp_path, width):
    path = save_random_vae(tmp_path / "vae.npz", embedding_dim=width)
    decoder = load_mask_decoder(str(path))
    assert decoder.codebook.weight.shape == (128, width)
    codes = np.random.default_rng(0).integers(0, 128, (5, 16))
    logits = decode_masks(decoder, codes)
    assert logits.shape == (5, 64, 64) and logits.dtype == np.float32
    assert decode_masks(decoder, np.zeros((0, 16), int)).shape == (0, 64, 64)


def test_a_batch_decodes_like_its_masks_one_by_one(tmp_path):
    decoder = load_mask_decoder(str(save_random_vae(tmp_path / "vae.npz")))
    codes = np.random.default_rng(1).integers(0, 128, (6, 16))
    together = decode_masks(decoder, codes)
    alone = np.concatenate([decode_masks(decoder, codes[i:i + 1]) for i in range(6)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5 * np.abs(alone).max())


def test_outputs_match_big_vision_flax_decoder(tmp_path):
    # The golden logits were computed by big_vision's own Flax `Decoder` and `_get_params`
    # (evaluators/proj/paligemma/transfers/segmentation.py @5f95305c) on `random_vae_arrays(8, 0)`;
    # tests/data/README.md says how.
    with np.load(GOLDEN, allow_pickle=False) as golden:
        width, seed, codes, expected = int(golden["width"]), int(golden["seed"]), golden["codes"], golden["logits"]
    np.savez(tmp_path / "seeded.npz", **random_vae_arrays(width, seed))
    logits = decode_masks(load_mask_decoder(str(tmp_path / "seeded.npz")), codes)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_pickled_file_is_refused(tmp_path):
    path = tmp_path / "vae-oid.npz"
    path.write_bytes(pickle.dumps({"_vq_vae._embedding": np.zeros((128, 8))}))
    with pytest.raises(VaeLoadError, match="pickled data is never loaded"):
        load_mask_decoder(str(path))


def test_an_npz_holding_a_pickled_object_array_is_refused(tmp_path):
    path = tmp_path / "vae-oid.npz"
    weights = random_vae_arrays(8, 0)
    weights["_vq_vae._embedding"] = np.array([{"not": "an array"}] * 128, dtype=object)
    np.savez(path, **weights)
    with pytest.raises(VaeLoadError, match="pickled"):
        load_mask_decoder(str(path))


@pytest.mark.parametrize("content", ["npy", "truncated"])
def test_a_single_array_or_a_truncated_archive_is_refused(tmp_path, content):
    path = tmp_path / "vae-oid.npz"
    if content == "npy":
        np.save(tmp_path / "one.npy", np.zeros((128, 8), np.float32))
        path.write_bytes((tmp_path / "one.npy").read_bytes())
    else:
        save_random_vae(path)
        path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(VaeLoadError, match="not a mask decoder .npz"):
        load_mask_decoder(str(path))


def test_missing_and_misshapen_arrays_are_named(tmp_path):
    weights = random_vae_arrays(8, 0)
    del weights["decoder.3.net.2.weight"]
    np.savez(tmp_path / "missing.npz", **weights)
    with pytest.raises(VaeLoadError, match="decoder.3.net.2.weight"):
        load_mask_decoder(str(tmp_path / "missing.npz"))
    weights = random_vae_arrays(8, 0)
    weights["decoder.6.weight"] = weights["decoder.6.weight"][:, :32]
    np.savez(tmp_path / "misshapen.npz", **weights)
    with pytest.raises(VaeLoadError, match="decoder.6.weight"):
        load_mask_decoder(str(tmp_path / "misshapen.npz"))


def test_a_missing_file_says_so(tmp_path):
    with pytest.raises(VaeLoadError, match="cannot read"):
        load_mask_decoder(str(tmp_path / "nope.npz"))


def test_the_decoder_is_found_beside_a_local_model(tmp_path, monkeypatch):
    assert find_vae("gs://bucket/vae.npz", str(tmp_path)) == "gs://bucket/vae.npz"
    assert find_vae(None, str(tmp_path)) is None
    save_random_vae(tmp_path / "vae-oid.npz")
    assert find_vae(None, str(tmp_path)) == str(tmp_path / "vae-oid.npz")
    monkeypatch.chdir(tmp_path)
    assert find_vae("vae-oid.npz", "m") == str(tmp_path / "vae-oid.npz")  # absolute, for the actors
    assert find_vae(None, "google/paligemma2-3b-mix-448") is None
    assert "gs://big_vision/paligemma/vae-oid.npz" in missing_vae_message("google/paligemma2-3b-mix-448")
