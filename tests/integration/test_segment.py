"""`segment` end to end on a real local Ray: codewords -> decoder on the actor -> RLE in Parquet."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.devtools.tiny_model import random_vae_arrays, save_scripted_paligemma
from pipelines.model.mask_decoder import decode_masks, load_mask_decoder
from pipelines.parse.geometry import place_mask
from pipelines.run import annotate
from schemas import LabelRow
from schemas.job import JobConfig
from tests.integration.conftest import read_output

pytestmark = pytest.mark.integration

SAMPLES = str(Path(__file__).resolve().parents[1] / "data" / "samples")
CODES = list(range(0, 128, 8))
# y_min, x_min, y_max, x_max = 100, 200, 700, 900 bins: a box left of centre, taller than wide on
# a landscape image; 16 distinct codewords, as the scripted model needs distinct tokens.
ANSWER = "<loc0100><loc0200><loc0700><loc0900>" + "".join(f"<seg{c:03d}>" for c in CODES) + " car"


@pytest.fixture(scope="module")
def scripted_model_dir(tmp_path_factory):
    """A tiny PaliGemma, loaded by path like any checkpoint, whose greedy answer is ANSWER."""
    return str(save_scripted_paligemma(tmp_path_factory.mktemp("models") / "scripted", ANSWER))


def test_masks_land_on_the_original_image(tmp_path, ray_local, scripted_model_dir):
    cfg = JobConfig(input=SAMPLES, output=str(tmp_path / "out"), model=scripted_model_dir,
                    tasks="segment,detect", classes="car,person", batch_size=2)
    summary = annotate(cfg)
    assert summary["vae"] == str(Path(scripted_model_dir) / "vae-oid.npz")  # found beside the model
    rows = read_output(cfg.output).to_pylist()
    assert sorted((r["source_uri"].rsplit("/", 1)[1], r["task"]) for r in rows) == sorted(
        (name, task) for name in ("portrait.png", "square.bmp", "street.jpg", "wide.webp", "tile.gif")
        for task in ("segment", "detect"))

    decoder = load_mask_decoder(summary["vae"])
    expected_logits = decode_masks(decoder, np.array([CODES]))[0]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        LabelRow.model_validate(row, context={"classes": ("car", "person")})
        (box,) = row["boxes"]
        width, height = row["width"], row["height"]
        assert (box["x_min"], box["y_min"], box["x_max"], box["y_max"]) == (
            200 / 1024 * width, 100 / 1024 * height, 900 / 1024 * width, 700 / 1024 * height)
        if row["task"] == "detect":
            assert row["masks"] == []
            continue
        (mask,) = row["masks"]
        assert mask["label"] == "car" and mask["rle"]["size"] == [height, width]
        pixels = LabelRow.model_validate(row).masks[0].rle.to_binary()
        expected = place_mask(expected_logits, (box["x_min"], box["y_min"], box["x_max"], box["y_max"]),
                              (width, height))
        np.testing.assert_array_equal(pixels, expected)
        assert 0 < pixels.sum() < (box["x_max"] - box["x_min"] + 1) * (box["y_max"] - box["y_min"] + 1)


def test_a_mask_covering_its_box_fills_the_rounded_box(tmp_path, ray_local, scripted_model_dir):
    # A decoder whose last layer outputs +1 everywhere: every mask is its whole box, so the
    # expected pixels follow from the box alone, worked out here by hand.
    arrays = random_vae_arrays()
    arrays["decoder.12.weight"][:] = 0
    arrays["decoder.12.bias"][:] = 1
    np.savez(tmp_path / "full-box-vae.npz", **arrays)
    cfg = JobConfig(input=SAMPLES, output=str(tmp_path / "out"), model=scripted_model_dir, tasks="segment",
                    classes="car", vae=str(tmp_path / "full-box-vae.npz"))
    annotate(cfg)
    rows = read_output(cfg.output).to_pylist()
    assert len(rows) == 5
    for row in rows:
        width, height = row["width"], row["height"]
        pixels = LabelRow.model_validate(row).masks[0].rle.to_binary()
        rows_set, cols_set = np.nonzero(pixels)
        assert (rows_set.min(), rows_set.max() + 1) == (round(100 / 1024 * height), round(700 / 1024 * height))
        assert (cols_set.min(), cols_set.max() + 1) == (round(200 / 1024 * width), round(900 / 1024 * width))
        assert pixels.sum() == (rows_set.max() + 1 - rows_set.min()) * (cols_set.max() + 1 - cols_set.min())
