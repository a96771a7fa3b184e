"""8-bit and 4-bit loading (pipelines.model.quantization) on the tiny random PaliGemma."""

import pytest
import torch
from transformers import PaliGemmaConfig

from pipelines.model.load import load_model
from pipelines.model.quantization import (
    check_quantization,
    quantization_config,
    save_quantized,
    stored_quantization,
    weight_bytes,
)

CPU = torch.device("cpu")


def linear_kinds(model) -> dict[str, set[str]]:
    """Per top-level part, the kinds of linear layer it holds."""
    kinds: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        if "Linear" in type(module).__name__ and name.startswith("model."):
            kinds.setdefault(name.split(".")[1], set()).add(type(module).__name__)
    return kinds


def test_the_configs_say_what_the_flag_says():
    assert quantization_config("none", torch.float32) is None
    int8 = quantization_config("8bit", torch.bfloat16)
    assert int8.load_in_8bit and not int8.load_in_4bit
    nf4 = quantization_config("4bit", torch.bfloat16)
    assert nf4.load_in_4bit and nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert not nf4.bnb_4bit_use_double_quant
    with pytest.raises(ValueError, match="quantization must be one of none, 8bit, 4bit"):
        quantization_config("2bit", torch.float32)


@pytest.mark.parametrize("quantization, kind", [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_every_linear_layer_but_the_head_is_quantized_and_the_footprint_is_as_computed(quantization, kind,
                                                                                      tiny_model_dir):
    model = load_model(tiny_model_dir, None, CPU, "float32", quantization)
    assert linear_kinds(model) == {"language_model": {kind}, "vision_tower": {kind}, "multi_modal_projector": {kind}}
    assert type(model.lm_head) is torch.nn.Linear and model.lm_head.weight is model.get_input_embeddings().weight
    computed = weight_bytes(PaliGemmaConfig.from_pretrained(tiny_model_dir), quantization, torch.float32)
    assert computed["total"] == pytest.approx(model.get_memory_footprint(), rel=0.02)
    unquantized = load_model(tiny_model_dir, None, CPU, "float32")
    # get_memory_footprint counts buffers too (rotary frequencies): a few hundred bytes
    assert weight_bytes(unquantized.config, "none", torch.float32)["total"] == pytest.approx(
        unquantized.get_memory_footprint(), abs=1024)
    full = weight_bytes(unquantized.config, "none", torch.float32)
    assert computed["vision_tower"] < full["vision_tower"] and computed["language_model"] < full["language_model"]
    # the part left out of quantization is kept whole
    only_language = weight_bytes(unquantized.config, quantization, torch.float32,
                                 ["model.vision_tower", "model.multi_modal_projector", "lm_head"])
    assert only_language["vision_tower"] == full["vision_tower"]


def test_a_saved_quantized_checkpoint_loads_as_saved_with_the_same_answers(tiny_model_dir, tmp_path):
    saved = save_quantized(tiny_model_dir, None, "8bit", "float32", str(tmp_path / "8bit"))
    config = PaliGemmaConfig.from_pretrained(saved["output"])
    assert stored_quantization(config) == "8bit" and saved["weights_bytes"] > 0
    check_quantization("8bit", config)
    with pytest.raises(ValueError, match="stored quantized \\(8bit\\); give --quantization 8bit"):
        check_quantization("none", config)
    reloaded = load_model(saved["output"], None, CPU, "float32", "8bit")
    at_load = load_model(tiny_model_dir, None, CPU, "float32", "8bit")
    assert linear_kinds(reloaded) == linear_kinds(at_load)
    ids = torch.tensor([[2, 5, 6, 7]])
    with torch.inference_mode():
        assert torch.equal(reloaded.model.language_model(input_ids=ids).last_hidden_state,
                           at_load.model.language_model(input_ids=ids).last_hidden_state)
    with pytest.raises(ValueError, match="exists and is not empty"):
        save_quantized(tiny_model_dir, None, "8bit", "float32", saved["output"])
