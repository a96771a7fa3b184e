"""A tiny, randomly initialised PaliGemma checkpoint for offline tests and demos.

Real PaliGemma weights live on the Hugging Face Hub behind a licence gate and cannot be
downloaded everywhere. This module builds a checkpoint with the same classes and the same
special vocabulary (`<image>`, `<locNNNN>`, `<segNNN>`), saves it with `save_pretrained`,
and so lets the pipeline exercise its real loading path (`from_pretrained` on a directory).
Its outputs are noise: it proves plumbing, not quality.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import (
    GemmaTokenizer,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

# Gemma's fixed ids for its first special tokens; PaliGemma configs refer to them.
_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def build_tiny_tokenizer() -> GemmaTokenizer:
    """A character-level Gemma-style tokenizer with byte fallback, so no text maps to <unk>."""
    chars = ["\n", "\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    vocab = {tok: i for i, tok in enumerate(_SPECIAL_TOKENS + chars + byte_tokens)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return GemmaTokenizer(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny_paligemma(
    image_size: int = 32, patch_size: int = 8, seed: int = 0
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """Build a PaliGemma 2 flavoured model (gemma2 text config) and its processor.

    Args:
        image_size: input resolution of the vision tower, in pixels (square).
        patch_size: SigLIP patch size; the model sees (image_size / patch_size) ** 2 image tokens.
        seed: torch seed for the random weights, so two builds are identical.
    """
    num_image_tokens = (image_size // patch_size) ** 2
    image_processor = SiglipImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=3,  # bicubic, as in the released PaliGemma preprocessor configs
        image_seq_length=num_image_tokens,
    )
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=build_tiny_tokenizer())
    # The embedding must cover <image> and every loc/seg id; PaliGemma pads it to a multiple of 64.
    vocab_size = ((len(processor.tokenizer) + 63) // 64) * 64
    text_config = dict(
        model_type="gemma2",
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        query_pre_attn_scalar=8,
        sliding_window=4096,
        hidden_activation="gelu_pytorch_tanh",
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    vision_config = dict(
        model_type="siglip_vision_model",
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vision_use_head=False,
    )
    config = PaliGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=processor.image_token_id,
        projection_dim=32,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    return model, processor


def save_tiny_paligemma(output_dir: str | Path, **kwargs) -> Path:
    """Build the tiny model and save weights (safetensors) and processor files to `output_dir`."""
    output_dir = Path(output_dir)
    model, processor = build_tiny_paligemma(**kwargs)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    return output_dir
