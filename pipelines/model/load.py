"""Load PaliGemma and its processor from a Hub id (with revision) or a local directory, with transformers (on
the model actors; the driver reads what it checks with `checkpoint.py`)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from pipelines.model.checkpoint import (
    ModelLoadError,
    explain_load_error,
    is_local,
    model_source,
    probe_hub,
    refuse_pickle_only,
    stored_quantization,
)
from pipelines.model.quantization import quantization_config, unquantized_modules


def _small_files(cls, model: str, revision: str | None):
    """`cls.from_pretrained` for a checkpoint's small files (processor, config): from a local directory that
    must exist, or the local Hugging Face cache, else the Hub after one quick probe."""
    if is_local(model):
        if not Path(model_source(model)).is_dir():
            raise ModelLoadError(f"model directory {model!r} does not exist")
    else:
        try:  # a copy in the local Hugging Face cache needs no network
            return cls.from_pretrained(model, revision=revision, local_files_only=True)
        except Exception:
            probe_hub(model, revision)
    try:
        return cls.from_pretrained(model_source(model), revision=revision)
    except Exception as err:  # the Hub and tokenizers raise many types; all mean "cannot load"
        raise explain_load_error(model, err) from err


def load_processor(model: str, revision: str | None = None) -> PaliGemmaProcessor:
    """The processor (a pickle-only directory is refused here too, with the reason)."""
    refuse_pickle_only(model)
    return _small_files(PaliGemmaProcessor, model, revision)


def load_config(model: str, revision: str | None) -> PaliGemmaConfig:
    """The checkpoint's config alone (no weights), with transformers' defaults filled in."""
    return _small_files(PaliGemmaConfig, model, revision)


def model_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`--dtype` on `device`: auto is bf16 on CUDA (what PaliGemma was trained and served in) and fp32 on
    CPU (where bf16 matmuls are slow on most processors); bfloat16 and float32 are taken as they are."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]


def load_model(model: str, revision: str | None, device: torch.device, dtype: str = "auto",
               quantization: str = "none") -> PaliGemmaForConditionalGeneration:
    """The model in eval mode on `device`, in `model_dtype(dtype, device)`; safetensors only, no remote code.

    quantization: "8bit" or "4bit" quantizes the linear layers while loading (which ones:
    pipelines.model.quantization); a checkpoint saved quantized loads as it was saved."""
    refuse_pickle_only(model)
    dtype = model_dtype(dtype, device)
    # A checkpoint saved quantized carries its own quantization_config.
    model_config = load_config(model, revision)
    stored = stored_quantization(model_config.to_dict())
    config = None if stored != "none" else quantization_config(
        quantization, dtype, unquantized_modules(model_config, quantization, device.type))
    try:
        loaded = PaliGemmaForConditionalGeneration.from_pretrained(
            model_source(model),
            revision=revision,
            dtype=dtype,
            use_safetensors=True,  # refuse pickle checkpoints: loading one can run arbitrary code
            trust_remote_code=False,
            # bitsandbytes places the weights as it quantizes them; they cannot be moved afterwards.
            **({"quantization_config": config} if config else {}),
            **({"device_map": {"": device}} if quantization != "none" else {}),
        )
    except Exception as err:
        raise explain_load_error(model, err) from err
    return loaded.eval() if quantization != "none" else loaded.to(device).eval()


def image_size_of(processor: PaliGemmaProcessor) -> int:
    """The square input resolution the vision tower expects."""
    size = processor.image_processor.size
    height, width = size["height"], size["width"]
    if height != width:
        raise ModelLoadError(f"expected a square input resolution, got {height}x{width}")
    return int(height)
