"""A tiny, randomly initialised PaliGemma checkpoint for offline tests and demos.

Real PaliGemma weights live on the Hugging Face Hub behind a licence gate and cannot be
downloaded everywhere. This module builds a checkpoint with the same classes and the same
special vocabulary (`<image>`, `<locNNNN>`, `<segNNN>`), saves it with `save_pretrained`,
and so lets the pipeline exercise its real loading path (`from_pretrained` on a directory).
Its outputs are noise: it proves plumbing, not quality.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GemmaTokenizer,
    PaliGemmaConfig,
    PaliGemmaForConditionalGeneration,
    PaliGemmaProcessor,
    SiglipImageProcessor,
)

from pipelines.model.checkpoint import VAE_FILENAME
from pipelines.model.generation import location_bins_of_ids
from pipelines.model.mask_decoder import MaskDecoder

RESAMPLE = 3  # PIL bicubic, as in the released PaliGemma preprocessor configs
# Gemma's fixed ids for its first special tokens; PaliGemma configs refer to them.
_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>"]


def build_tiny_tokenizer(corpus: Sequence[str] = (), pad_vocab_to: int = 0,
                         extra_tokens: Sequence[str] = ()) -> GemmaTokenizer:
    """A Gemma-style tokenizer with byte fallback, so no text maps to <unk>.

    Without a corpus it is character-level. With one, BPE merges are learnt from it inside words
    (a word starts at a space, written "▁" as in Gemma), so the corpus's words become single
    tokens like Gemma's "▁circle"; any other text still falls back to characters and bytes.
    `pad_vocab_to` appends never-produced `<unusedN>` tokens up to that size, so a model can have
    a real-size vocabulary (and output head) whose every id still decodes. `extra_tokens` are added
    as they are ("\u2581" for a space): never produced by encoding, but decoded, like Gemma's many
    tokens for runs of whitespace (a scripted answer uses them where it needs distinct ids).
    """
    chars = ["\n", "\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    vocab = {tok: i for i, tok in enumerate(_SPECIAL_TOKENS + chars + byte_tokens)}
    merges: list[tuple[str, str]] = []
    if corpus:
        learner = Tokenizer(models.BPE(unk_token="<unk>"))
        learner.normalizer = normalizers.Replace(" ", "\u2581")
        learner.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
        trainer = trainers.BpeTrainer(vocab_size=len(vocab) + 4096, min_frequency=2, initial_alphabet=chars,
                                      limit_alphabet=len(chars), show_progress=False)
        learner.train_from_iterator(corpus, trainer)
        learnt = json.loads(learner.to_str())["model"]
        merges = [tuple(pair) for pair in learnt["merges"]]
        for left, right in merges:
            vocab.setdefault(left + right, len(vocab))
    for token in extra_tokens:
        vocab.setdefault(token, len(vocab))
    for filler in range(pad_vocab_to - len(vocab)):
        vocab[f"<unused{filler}>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    if corpus:
        backend.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return GemmaTokenizer(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def build_tiny_paligemma(
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
    tie_word_embeddings: bool = True,
    hidden_size: int = 32,
    num_layers: int = 2,
    corpus: Sequence[str] = (),
    text_overrides: Mapping[str, object] | None = None,
    vision_overrides: Mapping[str, object] | None = None,
    pad_vocab_to: int = 0,
    extra_tokens: Sequence[str] = (),
) -> tuple[PaliGemmaForConditionalGeneration, PaliGemmaProcessor]:
    """Build a PaliGemma 2 flavoured model (gemma2 text config) and its processor.

    Args:
        image_size: input resolution of the vision tower, in pixels (square).
        patch_size: SigLIP patch size; the model sees (image_size / patch_size) ** 2 image tokens.
        seed: torch seed for the random weights, so two builds are identical.
        tie_word_embeddings: share the input embedding with the output head, as PaliGemma does.
        hidden_size: width of both towers (4 heads; MLPs twice as wide).
        num_layers: depth of each tower.
        corpus: texts to learn word tokens from (see `build_tiny_tokenizer`).
        text_overrides, vision_overrides: gemma2 / SigLIP config fields replacing the ones derived
            from `hidden_size` and `num_layers` (benchmark models of realistic shapes).
        pad_vocab_to: tokenizer size before the processor adds <image>, <loc> and <seg> tokens.
        extra_tokens: further vocabulary entries (see `build_tiny_tokenizer`).
    """
    num_image_tokens = (image_size // patch_size) ** 2
    image_processor = SiglipImageProcessor(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        resample=RESAMPLE,
        image_seq_length=num_image_tokens,
    )
    tokenizer = build_tiny_tokenizer(corpus, pad_vocab_to, extra_tokens)
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    # The embedding must cover <image> and every loc/seg id; PaliGemma pads it to a multiple of 64.
    vocab_size = ((len(processor.tokenizer) + 63) // 64) * 64
    text_config = dict(
        model_type="gemma2",
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        query_pre_attn_scalar=hidden_size // 4,
        sliding_window=4096,
        hidden_activation="gelu_pytorch_tanh",
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        tie_word_embeddings=tie_word_embeddings,
    ) | dict(text_overrides or {})
    vision_config = dict(
        model_type="siglip_vision_model",
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        vision_use_head=False,
    ) | dict(vision_overrides or {})
    config = PaliGemmaConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_index=processor.image_token_id,
        projection_dim=text_config["hidden_size"],
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    model = PaliGemmaForConditionalGeneration(config).eval()
    return model, processor


def script_answer(model: PaliGemmaForConditionalGeneration, processor: PaliGemmaProcessor,
                  answer: str | Sequence[int], location_alternatives: dict[int, float] | None = None) -> None:
    """Set the weights so that greedy decoding answers `answer` (text, or its token ids) to any prompt
    and image.

    Attention and MLP outputs are zeroed, so the logits depend on the current token alone; the
    tokens of the answer get orthogonal embeddings, and the output head maps each one to the
    next (the prompt ends with "\n", the answer with <eos>). The answer's tokens must be distinct
    and fewer than the hidden size. The model still runs the real PaliGemma code end to end,
    which is what the pipeline's tests need from it: a known answer, through the real stack.

    `location_alternatives` (bin offset -> logit relative to the scripted token's, below 0: -1.0 is e
    times less likely) spreads each `<loc>` step's probability over other bins at those offsets from
    the scripted one, as a model unsure of a coordinate does; the greedy answer stays the same, and
    every token outside the script then sits 30 below, so that the alternatives are the only
    competitors worth counting (`_spread_locations`).
    """
    tokenizer = processor.tokenizer
    ids = tokenizer.encode(answer, add_special_tokens=False) if isinstance(answer, str) else list(answer)
    chain = [tokenizer.convert_tokens_to_ids("\n"), *ids, tokenizer.eos_token_id]
    hidden = model.config.text_config.hidden_size
    if len(set(chain)) != len(chain) or len(chain) > hidden:
        raise ValueError(f"a scripted answer needs distinct tokens, at most {hidden - 1}: {answer!r}")
    if model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr():
        raise ValueError("build the model with tie_word_embeddings=False to script it")
    text_model = model.model.language_model
    basis = torch.eye(hidden)
    with torch.no_grad():
        for layer in text_model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for i, (token, next_token) in enumerate(zip(chain, chain[1:])):
            text_model.embed_tokens.weight[token] = basis[i]
            model.lm_head.weight[next_token] = 10 * basis[i]
        if location_alternatives:
            _spread_locations(model, tokenizer, chain, location_alternatives)


def _spread_locations(model: PaliGemmaForConditionalGeneration, tokenizer, chain: Sequence[int],
                      alternatives: dict[int, float]) -> None:
    """Exact final logits for a scripted chain: the scripted token 20, each `<loc>` step's alternatives
    20 + their relative logit, every other token -10."""
    # The head sees basis[i] after the final RMSNorm: sqrt(hidden) * (1 + its weight[i]) along i. Gemma
    # 2's final soft-cap would bend the logits (transformers applies it from 5.2x on), so it is off.
    hidden = model.config.text_config.hidden_size
    scale = hidden ** 0.5 * (1 + model.model.language_model.norm.weight.float())
    model.config.text_config.final_logit_softcapping = None

    def weight(logit: float) -> torch.Tensor:
        return logit / scale

    bins = location_bins_of_ids(tokenizer)
    model.lm_head.weight.copy_(weight(-10.0).expand_as(model.lm_head.weight))
    for i, next_token in enumerate(chain[1:]):
        model.lm_head.weight[next_token, i] = weight(20.0)[i]
        if next_token < len(bins) and bins[next_token] >= 0:
            for offset, logit in alternatives.items():
                other = tokenizer.convert_tokens_to_ids(f"<loc{bins[next_token] + offset:04d}>")
                model.lm_head.weight[other, i] = weight(20.0 + logit)[i]


def save_scripted_paligemma(output_dir: str | Path, answer: str | Sequence[str], with_vae: bool = True,
                            seed: int = 0, location_alternatives: dict[int, float] | None = None,
                            **build_kwargs) -> Path:
    """Save a tiny PaliGemma that answers `answer` to everything (see `script_answer`): a text, or a
    list of tokens (vocabulary strings, added to the vocabulary when missing) for an answer whose text
    repeats itself. `build_kwargs` go to `build_tiny_paligemma`."""
    tokens = None if isinstance(answer, str) else list(answer)
    if tokens is not None:
        build_kwargs["extra_tokens"] = [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]
    model, processor = build_tiny_paligemma(seed=seed, tie_word_embeddings=False, **build_kwargs)
    if tokens is not None:
        answer = processor.tokenizer.convert_tokens_to_ids(tokens)
    script_answer(model, processor, answer, location_alternatives)
    return save_checkpoint(model, processor, output_dir, with_vae, seed)


def random_vae_arrays(embedding_dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """Random mask decoder weights under the published `vae-oid.npz` names and shapes (all but
    the codebook width, which the real file sets and loaders read). NumPy's generator keeps them
    the same across versions; the scale keeps activations O(1), so masks have both signs."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape_source in MaskDecoder(embedding_dim=embedding_dim).state_dict_to_npz().items():
        shape = shape_source.shape
        if name.endswith(".bias"):
            scale = 0.1
        elif len(shape) == 4:
            scale = 2 / np.sqrt(np.prod(shape[1:]))
        else:  # the codebook
            scale = 1.0
        arrays[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return arrays


def save_random_vae(path: str | Path, embedding_dim: int = 8, seed: int = 0) -> Path:
    """Write `random_vae_arrays` as an .npz file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # a file object keeps numpy from appending a second ".npz"
        np.savez(f, **random_vae_arrays(embedding_dim, seed))
    return path


def save_tiny_paligemma(output_dir: str | Path, with_vae: bool = True, **kwargs) -> Path:
    """Build the tiny model and save weights (safetensors) and processor files to `output_dir`,
    with a random mask decoder beside them as `vae-oid.npz` (found there by `--tasks segment`)."""
    model, processor = build_tiny_paligemma(**kwargs)
    return save_checkpoint(model, processor, output_dir, with_vae, kwargs.get("seed", 0))


# transformers 5 saves the SigLIP tower's weights as `vision_tower.<module>`; the Hub checkpoints, and
# vLLM's loader, name them `vision_tower.vision_model.<module>` (transformers loads both).
_HUB_VISION_PREFIX = "vision_tower.vision_model."


def save_model_hub_layout(model: PaliGemmaForConditionalGeneration, output_dir: str | Path) -> Path:
    """`save_pretrained` (one safetensors file), with the weights named as in the Hub's PaliGemma
    checkpoints, so that both transformers and vLLM load the directory."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, safe_serialization=True, max_shard_size="50GB")  # one file, even for 3B
    weights = output_dir / "model.safetensors"
    tensors = load_file(weights)
    renamed = {(_HUB_VISION_PREFIX + name.removeprefix("vision_tower.")
                if name.startswith("vision_tower.") and not name.startswith(_HUB_VISION_PREFIX) else name): tensor
               for name, tensor in tensors.items()}
    save_file(renamed, weights, metadata={"format": "pt"})
    return output_dir


def save_checkpoint(model, processor, output_dir: str | Path, with_vae: bool = False, seed: int = 0) -> Path:
    """Weights (safetensors, Hub layout) and processor files, plus a random `vae-oid.npz` when asked."""
    output_dir = Path(output_dir)
    save_model_hub_layout(model, output_dir)
    processor.save_pretrained(output_dir)
    if with_vae:
        save_random_vae(output_dir / VAE_FILENAME, seed=seed)
    return output_dir
