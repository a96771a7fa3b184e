"""The training recipes actually train: the mask VAE learns the shapes, and a short run of the shapes
recipe writes a checkpoint the pipeline loads (a smoke run: CI never retrains the committed one)."""

import dataclasses
import json

import pytest
import torch

from pipelines.devtools.mask_vae import MaskVae, reconstruction_iou, train_mask_vae
from pipelines.devtools.train_shapes import SUMMARY_FILE, TrainConfig, train_shapes
from pipelines.model.checkpoint import VAE_FILENAME
from pipelines.model.load import image_size_of, load_model, load_processor
from pipelines.model.mask_decoder import load_mask_decoder
from tests.unit.devtools.test_mask_vae import shape_masks

pytestmark = pytest.mark.integration


def test_training_learns_to_reconstruct_shapes():
    masks = shape_masks(60)
    # shapes fill most of their box, so even an all-positive decoder scores about 0.79
    untrained = reconstruction_iou(MaskVae(embedding_dim=8), masks)
    vae, _ = train_mask_vae(masks, steps=150, batch_size=16, embedding_dim=8, log_every=0)
    trained = reconstruction_iou(vae, masks)  # measured 0.92
    assert trained > 0.9 and trained > untrained + 0.1


def test_a_short_run_writes_a_checkpoint_the_pipeline_loads(tmp_path):
    cfg = TrainConfig(images=6, steps=2, batch_size=4, vae_steps=2, hidden_size=32, num_layers=1, image_size=28,
                      patch_size=14)
    summary = train_shapes(tmp_path / "model", cfg, log_every=0)
    assert summary["config"]["steps"] == 2 and summary["examples"] == 18
    saved = json.loads((tmp_path / "model" / SUMMARY_FILE).read_text())
    assert saved["config"] == json.loads(json.dumps(dataclasses.asdict(cfg)))
    processor = load_processor(str(tmp_path / "model"))
    assert processor.tokenizer.padding_side == "left" and image_size_of(processor) == 28
    assert processor.tokenizer.tokenize(" triangle") == ["\u2581triangle"]
    load_model(str(tmp_path / "model"), None, torch.device("cpu"))
    load_mask_decoder(str(tmp_path / "model" / VAE_FILENAME))
