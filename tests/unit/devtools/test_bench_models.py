"""Benchmark architectures: shapes and FLOPs, counted on the meta device (no weights allocated)."""

import pytest
import torch

from pipelines.devtools.bench_models import ARCHITECTURES, flops_per_image, parameter_counts
from pipelines.devtools.tiny_model import build_tiny_paligemma


def meta_config(name: str, image_size: int):
    patch, text, vision, vocab = ARCHITECTURES[name]
    with torch.device("meta"):
        model, processor = build_tiny_paligemma(image_size=image_size, patch_size=patch, text_overrides=text,
                                                vision_overrides=vision, pad_vocab_to=vocab)
    return model.config, processor


@pytest.mark.parametrize("image_size, image_tokens", [(224, 256), (448, 1024)])
def test_paligemma2_3b_has_the_published_shapes(image_size, image_tokens):
    config, processor = meta_config("paligemma2-3b", image_size)
    counts = parameter_counts(config)
    assert 3.02e9 < counts["total"] < 3.04e9  # PaliGemma 2 3B: 3.03B parameters
    assert config.text_config.vocab_size == len(processor.tokenizer) == 257216
    assert processor.image_seq_length == image_tokens
    assert all(processor.tokenizer.decode([i]) for i in (1000, 256000, 257215))  # every id of the head decodes


def test_cpu_mid_is_mid_size_with_a_vision_share_like_the_3b():
    config, _ = meta_config("cpu-mid", 224)
    assert 50e6 < parameter_counts(config)["total"] < 150e6
    mid, big = flops_per_image(config, [5], [40]), flops_per_image(meta_config("paligemma2-3b", 224)[0], [5], [40])
    share = [f["vision"] / (f["vision"] + f["prefill"]) for f in (mid, big)]
    assert abs(share[0] - share[1]) < 0.1


def test_flops_grow_with_resolution_and_new_tokens():
    config, _ = meta_config("paligemma2-3b", 224)
    config448, _ = meta_config("paligemma2-3b", 448)
    low, high = flops_per_image(config, [5], [40]), flops_per_image(config448, [5], [40])
    assert high["vision"] == pytest.approx(4 * low["vision"], rel=0.01)
    longer = flops_per_image(config, [5], [80])
    assert longer["decode"] == pytest.approx(2 * low["decode"])
    assert low["total"] == pytest.approx(low["vision"] + low["prefill"] + low["decode"])
