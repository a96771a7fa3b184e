"""Random-weight PaliGemma checkpoints of realistic shapes for throughput benchmarks, and their FLOPs.

Speed depends on a model's shapes, not on its weights, so no download is needed: `cpu-mid` is a
61M-parameter PaliGemma 2 that two CPU cores can run in minutes, `paligemma2-3b` has the published
PaliGemma 2 3B configuration (SigLIP So400m/14 and Gemma 2 2B, 257,216-token vocabulary) for a GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from pipelines.devtools.tiny_model import build_tiny_paligemma, save_checkpoint

# Per model: patch size, gemma2 text overrides, SigLIP overrides, tokenizer size before the
# processor adds <image>, 1024 <loc> and 128 <seg> tokens (0: the tiny tokenizer as it is).
ARCHITECTURES: dict[str, tuple[int, dict, dict, int]] = {
    "tiny": (8, {}, {}, 0),
    "cpu-mid": (
        16,
        dict(hidden_size=640, intermediate_size=2560, num_hidden_layers=8, num_attention_heads=10,
             num_key_value_heads=5, head_dim=64, query_pre_attn_scalar=64),
        # vision is ~17% of the prefill FLOPs at 224 px, as in PaliGemma 2 3B
        dict(hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6),
        0,
    ),
    "paligemma2-3b": (
        14,
        dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
             num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=4096,
             final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
        dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
        257216 - 1 - 1024 - 128 - 1,  # the processor also adds one more special token
    ),
}


def build_benchmark_model(
    name: str, image_size: int, device: str = "cpu", seed: int = 0
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """The named architecture at `image_size` px with random weights, built on `device` (bf16 on CUDA)."""
    patch, text, vision, vocab = ARCHITECTURES[name]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return build_tiny_paligemma(image_size=image_size, patch_size=patch, seed=seed,
                                        text_overrides=text, vision_overrides=vision, pad_vocab_to=vocab)
    finally:
        torch.set_default_dtype(previous)


def meta_config(name: str, image_size: int) -> tuple[PaliGemmaConfig, PaliGemmaProcessor]:
    """The named architecture's config and processor, built on the meta device: nothing allocated."""
    patch, text, vision, vocab = ARCHITECTURES[name]
    with torch.device("meta"):
        model, processor = build_tiny_paligemma(image_size=image_size, patch_size=patch, text_overrides=text,
                                                vision_overrides=vision, pad_vocab_to=vocab)
    return model.config, processor


def prefill_roofline(name: str, image_size: int, peak_tflops: float, prompt_tokens: int = 5) -> float:
    """Images per second an accelerator of `peak_tflops` reaches at best on the vision tower and one
    prompt's prefill (decoding left out): the rate a model stage could need fed."""
    flops = flops_per_image(meta_config(name, image_size)[0], [prompt_tokens], [0])
    return peak_tflops * 1e12 / (flops["vision"] + flops["prefill"])


def save_benchmark_model(name: str, image_size: int, output_dir: str | Path, device: str = "cpu") -> Path:
    """Build and `save_pretrained` it, so the benchmark loads it through the pipeline's real path."""
    return save_checkpoint(*build_benchmark_model(name, image_size, device), output_dir)


def parameter_counts(config: PaliGemmaConfig) -> dict[str, int]:
    """Parameters of the vision tower + projector, the text transformer (embeddings excluded) and the
    output head, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        model = PaliGemmaForConditionalGeneration(config)
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    vision += sum(p.numel() for p in model.model.multi_modal_projector.parameters())
    embed = model.model.language_model.embed_tokens.weight.numel()
    text = sum(p.numel() for p in model.model.language_model.parameters()) - embed
    return {"vision": vision, "text": text, "lm_head": model.lm_head.weight.numel(),
            "total": sum(p.numel() for p in model.parameters())}


def flops_per_image(config: PaliGemmaConfig, prompt_tokens: list[int], new_tokens: list[int]) -> dict[str, float]:
    """Forward FLOPs of the linear layers (2 per multiply-add; attention scores left out) to answer one
    image's requests: the vision tower once, then per request a prefill of image + prompt tokens
    (the head on its last position) and one step per new token."""
    counts = parameter_counts(config)
    image_tokens = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    vision = 2.0 * counts["vision"] * image_tokens
    prefill = sum(2.0 * counts["text"] * (image_tokens + p) + 2.0 * counts["lm_head"] for p in prompt_tokens)
    decode = sum(2.0 * (counts["text"] + counts["lm_head"]) * n for n in new_tokens)
    return {"vision": vision, "prefill": prefill, "decode": decode, "total": vision + prefill + decode}
