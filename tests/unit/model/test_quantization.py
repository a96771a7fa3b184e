"""8-bit and 4-bit loading (pipelines.model.quantization) on the tiny random PaliGemma."""

import pytest
import torch
from transformers import PaliGemmaConfig

from pipelines.model.checkpoint import check_quantization, read_config, stored_quantization
from pipelines.model.load import load_model
from pipelines.model.quantization import quantization_config, save_quantized, unquantized_modules, weight_bytes

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
    left = set(unquantized_modules(model.config, quantization, "cpu"))
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__:
            assert type(module).__name__ == ("Linear" if name in left else kind), name
    assert kind in linear_kinds(model)["vision_tower"]  # the vision tower too (on a GPU, every layer)
    assert type(model.lm_head) is torch.nn.Linear and model.lm_head.weight is model.get_input_embeddings().weight
    computed = weight_bytes(model.config, quantization, torch.float32, sorted(left))
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
    config = read_config(saved["output"], None)  # as saved, read as the driver reads it
    assert stored_quantization(config) == "8bit" and saved["weights_bytes"] > 0
    assert stored_quantization(PaliGemmaConfig.from_pretrained(saved["output"]).to_dict()) == "8bit"
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


def test_on_cpu_4bit_leaves_layers_the_cpu_kernel_cannot_pack_and_still_answers(tmp_path):
    """SigLIP-So400m's MLP is 4,304 wide; bitsandbytes' CPU 4-bit kernel packs blocks of 32 rows and 64
    columns and failed on it ("N must be divisible by block_n"). A vision MLP 72 wide stands in for it."""
    import numpy as np

    from pipelines.devtools.tiny_model import save_tiny_paligemma
    from pipelines.model.generation import GenerationRequest
    from pipelines.model.hf_engine import TransformersEngine

    odd = save_tiny_paligemma(tmp_path / "odd", with_vae=False, vision_overrides={"intermediate_size": 72})
    config = PaliGemmaConfig.from_pretrained(odd)
    skipped = unquantized_modules(config, "4bit", "cpu")
    modules = dict(load_model(str(odd), None, CPU, "float32").named_modules())
    assert skipped[0] == "lm_head"
    assert all(modules[name].out_features % 32 or modules[name].in_features % 64 for name in skipped[1:])
    assert {f"model.vision_tower.encoder.layers.{i}.mlp.{fc}" for i in range(config.vision_config.num_hidden_layers)
            for fc in ("fc1", "fc2")} <= set(skipped)
    assert unquantized_modules(config, "4bit", "cuda") == unquantized_modules(config, "8bit", "cpu") == ["lm_head"]
    engine = TransformersEngine(str(odd), None, CPU, "float32", 2, quantization="4bit")
    size = engine.processor.image_processor.size["height"]
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    (answer,) = engine.generate([GenerationRequest(0, "caption", "caption en", pixels, 3)])
    assert not isinstance(answer, BaseException), answer
