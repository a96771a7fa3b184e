"""What the driver reads from a checkpoint's small files (pipelines.model.checkpoint), against what
transformers reads from the same files on the model actors."""

import json
import shutil
from pathlib import Path

import pytest
from transformers import PaliGemmaConfig

from pipelines.devtools.tiny_model import save_tiny_paligemma
from pipelines.model.checkpoint import (
    ImageSettings,
    ModelLoadError,
    check_model_source,
    check_tokenizer,
    image_settings,
    read_config,
    ties_word_embeddings,
)
from pipelines.model.load import image_size_of, load_processor
from tests.conftest import SHAPES_MODEL


def copy_of(model: str | Path, target: Path) -> Path:
    shutil.copytree(model, target)
    return target


@pytest.mark.parametrize("which", ["tiny", "shapes"])
def test_image_settings_are_the_processors(which, tiny_model_dir):
    model = tiny_model_dir if which == "tiny" else str(SHAPES_MODEL)
    processor = load_processor(model)
    assert image_settings(model, None) == ImageSettings(image_size_of(processor),
                                                        int(processor.image_processor.resample))


def test_the_published_layout_preprocessor_config_json_is_read_too(tmp_path, tiny_model_dir):
    """The Hub's PaliGemma checkpoints keep the image settings at the top of preprocessor_config.json."""
    model = copy_of(tiny_model_dir, tmp_path / "hub-layout")
    nested = json.loads((model / "processor_config.json").read_text())["image_processor"]
    (model / "processor_config.json").unlink()
    (model / "preprocessor_config.json").write_text(json.dumps({**nested, "size": {"height": 448, "width": 448},
                                                                "resample": 2}))
    assert image_settings(str(model), None) == ImageSettings(448, 2)
    assert image_size_of(load_processor(str(model))) == 448  # transformers reads the same file


def test_a_checkpoint_without_square_size_or_processor_file_is_refused(tmp_path, tiny_model_dir):
    model = copy_of(tiny_model_dir, tmp_path / "model")
    saved = json.loads((model / "processor_config.json").read_text())
    saved["image_processor"]["size"] = {"height": 224, "width": 448}
    (model / "processor_config.json").write_text(json.dumps(saved))
    with pytest.raises(ModelLoadError, match="expected a square input resolution"):
        image_settings(str(model), None)
    (model / "processor_config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"cannot load model directory .*no processor file"):
        image_settings(str(model), None)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_embeddings_as_transformers_reads_them(tied, tmp_path):
    model = save_tiny_paligemma(tmp_path / "model", with_vae=False, tie_word_embeddings=tied)
    config = read_config(str(model), None)
    assert ties_word_embeddings(config) is tied
    assert PaliGemmaConfig.from_pretrained(model).text_config.tie_word_embeddings is tied
    # A config that does not say (older saves write only what differs from the defaults): Gemma's default, tied.
    for saved in (config, config["text_config"]):
        saved.pop("tie_word_embeddings", None)
    (model / "config.json").write_text(json.dumps(config))
    assert ties_word_embeddings(config) is PaliGemmaConfig.from_pretrained(model).text_config.tie_word_embeddings


def test_a_broken_or_missing_tokenizer_is_refused(tmp_path, tiny_model_dir):
    model = copy_of(tiny_model_dir, tmp_path / "model")
    check_tokenizer(str(model), None)
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "nothing-known"}}')
    with pytest.raises(ModelLoadError, match="tokenizer.json does not parse"):
        check_tokenizer(str(model), None)
    (model / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"no tokenizer \(tokenizer.json or tokenizer.model\)"):
        check_tokenizer(str(model), None)


def test_a_hub_id_that_is_neither_cached_nor_reachable_says_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="from the Hugging Face Hub.*hf auth login"):
        check_model_source("google/paligemma2-3b-pt-224", None)
