"""Load PaliGemma and its processor from a Hub id (with revision) or a local directory."""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import HfApi
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from pipelines.model.quantization import quantization_config, stored_quantization, unquantized_modules

HUB_PROBE_TIMEOUT_S = 10


class ModelLoadError(RuntimeError):
    """The model or processor cannot be loaded; the message says what to do."""


def _is_local(model: str) -> bool:
    return Path(model).expanduser().exists() or model.startswith(("/", ".", "~"))


def model_source(model: str) -> str:
    """What from_pretrained takes: an expanded local path, or the Hub id unchanged."""
    return str(Path(model).expanduser()) if _is_local(model) else model


def explain_load_error(model: str, err: Exception) -> ModelLoadError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if _is_local(model):
        return ModelLoadError(
            f"cannot load model directory {model!r}: {reason}. Pass a directory written by "
            "save_pretrained (config.json, *.safetensors and the processor files)."
        )
    return ModelLoadError(
        f"cannot load {model!r} from the Hugging Face Hub: {reason}. PaliGemma checkpoints are gated: "
        "accept the licence on the model page, then run `hf auth login` or set HF_TOKEN; without "
        "network access, pass --model /path/to/a/local/copy saved with save_pretrained."
    )


def _probe_hub(model: str, revision: str | None) -> None:
    """One quick request, so that an unreachable or gated Hub fails in seconds rather than after
    huggingface_hub's retries of every file (measured: 3.5 minutes with no network)."""
    try:
        HfApi().model_info(model, revision=revision, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:
        raise explain_load_error(model, err) from err


def _small_files(cls, model: str, revision: str | None):
    """`cls.from_pretrained` for what the driver reads before Ray starts (processor, config): from a local
    directory that must exist, or the local Hugging Face cache, else the Hub after one quick probe."""
    if _is_local(model):
        if not Path(model_source(model)).is_dir():
            raise ModelLoadError(f"model directory {model!r} does not exist")
    else:
        try:  # a copy in the local Hugging Face cache needs no network
            return cls.from_pretrained(model, revision=revision, local_files_only=True)
        except Exception:
            _probe_hub(model, revision)
    try:
        return cls.from_pretrained(model_source(model), revision=revision)
    except Exception as err:  # the Hub and tokenizers raise many types; all mean "cannot load"
        raise explain_load_error(model, err) from err


def load_processor(model: str, revision: str | None = None) -> PaliGemmaProcessor:
    """The processor; cheap, so the driver loads it to validate the model before any work starts (a
    pickle-only directory is refused here too, before Ray starts, rather than on the model actors)."""
    refuse_pickle_only(model)
    return _small_files(PaliGemmaProcessor, model, revision)


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def refuse_pickle_only(model: str) -> None:
    """A local checkpoint with pickle weights and no safetensors gets a message that says why it is refused."""
    if not _is_local(model) or not Path(model_source(model)).is_dir():
        return
    directory = Path(model_source(model))
    if any(directory.glob("*.safetensors")):
        return
    pickled = sorted(path.name for pattern in PICKLE_WEIGHTS for path in directory.glob(pattern))
    if pickled:
        raise ModelLoadError(
            f"model directory {model!r} holds only pickle weights ({', '.join(pickled)}); they are never "
            "loaded, because unpickling a file can run arbitrary code. Convert them to safetensors "
            "(load them where you trust the file, then save_pretrained(dir) writes model.safetensors).")


def load_config(model: str, revision: str | None) -> PaliGemmaConfig:
    """The checkpoint's config alone (no weights), for the checks made before Ray starts."""
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
    stored = stored_quantization(model_config)
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
