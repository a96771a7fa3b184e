"""Benchmark architectures: shapes and FLOPs, counted on the meta device (no weights allocated)."""

import pytest

from pipelines.devtools.bench_models import flops_per_image, meta_config, parameter_counts, prefill_roofline


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


def test_the_prefill_roofline_of_the_3b_on_an_h100():
    # H100 SXM bf16: 989 TFLOP/s; linear layers only: about 197 images/s at 448 px, four times more at 224
    at_448, at_224 = prefill_roofline("paligemma2-3b", 448, 989), prefill_roofline("paligemma2-3b", 224, 989)
    assert 180 < at_448 < 210 and 3.5 < at_224 / at_448 < 4.5
