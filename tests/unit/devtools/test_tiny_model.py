"""The stand-in checkpoints: saved like real ones, and a scripted one answers what it was told."""

import numpy as np
import pytest
import torch

from pipelines.devtools.tiny_model import (
    build_tiny_paligemma,
    random_vae_arrays,
    save_scripted_paligemma,
    script_answer,
)
from pipelines.model.checkpoint import VAE_FILENAME
from pipelines.model.load import load_model, load_processor
from pipelines.model.mask_decoder import load_mask_decoder


def test_a_scripted_checkpoint_answers_its_script_to_any_image(tmp_path):
    answer = "<loc0100><loc0200><loc0300><loc0400> car"
    path = save_scripted_paligemma(tmp_path / "scripted", answer)
    processor = load_processor(str(path))
    model = load_model(str(path), None, torch.device("cpu"))
    images = [np.full((processor.image_processor.size["height"],) * 2 + (3,), value, np.uint8) for value in (0, 200)]
    inputs = processor(text=["<image>detect car"] * 2, images=images, return_tensors="pt")
    inputs.pop("labels", None)
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    texts = processor.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert texts == [answer, answer]
    load_mask_decoder(str(path / VAE_FILENAME))


def test_a_script_needs_distinct_tokens_and_untied_embeddings():
    model, processor = build_tiny_paligemma(tie_word_embeddings=False)
    with pytest.raises(ValueError, match="distinct tokens"):
        script_answer(model, processor, "<loc0001><loc0001>")
    tied, tied_processor = build_tiny_paligemma()
    with pytest.raises(ValueError, match="tie_word_embeddings=False"):
        script_answer(tied, tied_processor, "car")


def test_random_vae_weights_are_reproducible():
    first, again = random_vae_arrays(seed=3), random_vae_arrays(seed=3)
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
