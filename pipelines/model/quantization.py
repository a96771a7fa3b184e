"""8-bit and 4-bit weights with bitsandbytes, as the PaliGemma model cards load them, for the transformers
engine: quantized when a checkpoint is loaded, or read back from a checkpoint saved already quantized.

- `8bit`: LLM.int8 (`load_in_8bit`): a linear layer's weights in int8 with one scale per output row.
- `4bit`: NF4 (`bnb_4bit_quant_type="nf4"`), computed in the dtype `--dtype` gives, one absmax scale per
  block of 64 weights; no double quantization (it saves 0.4 bits per weight, about 0.15 GB of a 3B model,
  and costs a dequantization step per layer on every call).

Every linear layer is quantized, the vision tower's and the projector's too, as the model cards' plain
`BitsAndBytesConfig(load_in_8bit=True)` does; the embedding, which is also the output head, stays in the
compute dtype (bitsandbytes quantizes linear layers only). Measured on the shapes checkpoint (200 fresh
scenes, docs/performance.md, "Quantization"): leaving the vision tower and projector unquantized changed
no score by more than 0.005 mAP@.5 and ran faster on CPU, but on PaliGemma 2 3B it would keep 0.39 GiB
(8-bit) or 0.56 GiB (4-bit) more per replica, and saving memory is what the flag is for.

One exception, on CPU at 4-bit: bitsandbytes' CPU kernel (on processors with AVX512-BF16) packs weights
in blocks of 32 output rows and 64 input columns, and fails on layers of other sizes, as SigLIP-So400m's
MLP (4,304 wide) is. Such layers stay unquantized there (`unquantized_modules`); on a GPU every layer is
quantized.
"""

from __future__ import annotations

from typing import get_args

import torch
from transformers import BitsAndBytesConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration

from pipelines.model.checkpoint import check_quantization, find_vae, read_config
from schemas.job import Quantization

QUANTIZATIONS: tuple[str, ...] = get_args(Quantization)
# Modules left in the compute dtype, as transformers matches them: a module name that starts with one of
# these (up to a dot) or ends with it. The output head is tied to the embedding.
UNQUANTIZED_MODULES = ["lm_head"]
NF4_BLOCK = 64  # weights per absmax scale in bitsandbytes' 4-bit formats
CPU_NF4_BLOCK = (32, 64)  # bitsandbytes' CPU 4-bit kernel: output rows and input columns per packed block


def _meta_model(config: PaliGemmaConfig) -> PaliGemmaForConditionalGeneration:
    with torch.device("meta"):  # the structure only: no memory, no weights
        return PaliGemmaForConditionalGeneration(config)


def unquantized_modules(config: PaliGemmaConfig, quantization: str, device_type: str) -> list[str]:
    """The modules left in the compute dtype: the output head, and on CPU at 4-bit the linear layers whose
    sizes bitsandbytes' CPU kernel cannot pack (see the module docstring)."""
    if quantization != "4bit" or device_type != "cpu":
        return list(UNQUANTIZED_MODULES)
    odd = [name for name, module in _meta_model(config).named_modules()
           if isinstance(module, torch.nn.Linear)
           and (module.out_features % CPU_NF4_BLOCK[0] or module.in_features % CPU_NF4_BLOCK[1])]
    return [*UNQUANTIZED_MODULES, *odd]


def quantization_config(quantization: str, compute_dtype: torch.dtype,
                        unquantized: list[str] | None = None) -> BitsAndBytesConfig | None:
    """transformers' `quantization_config` for `quantization`, None for "none"."""
    skip = UNQUANTIZED_MODULES if unquantized is None else unquantized
    if quantization == "none":
        return None
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                                  bnb_4bit_use_double_quant=False, llm_int8_skip_modules=skip)
    raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")


def _left_unquantized(name: str, skip: list[str]) -> bool:
    return any(name == key or name.startswith(key + ".") or name.endswith(key) for key in skip)


def weight_bytes(config: PaliGemmaConfig, quantization: str, dtype: torch.dtype,
                 unquantized: list[str] | None = None) -> dict[str, int]:
    """The model's weights in memory, computed from its config (no weights loaded): bytes per part
    (vision_tower, multi_modal_projector, language_model) and `total`.

    int8: one byte per quantized weight + a float32 scale per output row; nf4: half a byte per weight + a
    float32 absmax per block of 64; every other parameter in `dtype`."""
    skip = UNQUANTIZED_MODULES if unquantized is None else unquantized
    model = _meta_model(config)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    quantized_weights = set()
    if quantization != "none":
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not _left_unquantized(name, skip):
                quantized_weights.add(id(module.weight))
    parts: dict[str, int] = {}
    for name, param in model.named_parameters():  # a tied weight is listed once
        part = next((p for p in ("vision_tower", "multi_modal_projector", "language_model") if p in name), "other")
        if id(param) not in quantized_weights:
            size = param.numel() * itemsize
        elif quantization == "8bit":
            size = param.numel() + param.shape[0] * 4
        else:
            size = param.numel() // 2 + -(-param.numel() // NF4_BLOCK) * 4
        parts[part] = parts.get(part, 0) + size
    parts["total"] = sum(parts.values())
    return parts


def save_quantized(model: str, revision: str | None, quantization: str, dtype: str, output: str,
                   device: str = "cpu") -> dict:
    """Quantize a checkpoint once and save it with bitsandbytes' serialization (`save_pretrained`), with its
    processor and, for a local directory, its mask decoder file: model actors then load it quantized instead
    of quantizing on every start. Returns what was written."""
    import shutil  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from pipelines.model.load import load_model, load_processor  # noqa: PLC0415 - load imports this

    if quantization == "none":
        raise ValueError("give --quantization 8bit or 4bit")
    check_quantization(quantization, read_config(model, revision))
    target = Path(output)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{output!r} exists and is not empty; give a new directory")
    loaded = load_model(model, revision, torch.device(device), dtype, quantization)
    loaded.save_pretrained(target)
    load_processor(model, revision).save_pretrained(target)
    vae = find_vae(None, model)
    if vae:
        shutil.copy2(vae, target / Path(vae).name)
    weights = sum(path.stat().st_size for path in target.glob("*.safetensors"))
    return {"output": str(target), "quantization": quantization, "weights_bytes": weights,
            "mask_decoder": Path(vae).name if vae else None}
