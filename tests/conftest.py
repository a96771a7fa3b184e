"""Fixtures shared by unit and integration tests."""

from pathlib import Path

import pytest

from pipelines.tiny_model import save_tiny_paligemma

# The committed checkpoint trained on synthetic shapes by jobs/train_shapes.py (README, "Measuring quality").
SHAPES_MODEL = Path(__file__).resolve().parent / "data" / "shapes-paligemma"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random PaliGemma saved with save_pretrained, loaded by path like a real checkpoint."""
    return str(save_tiny_paligemma(tmp_path_factory.mktemp("models") / "tiny-paligemma"))
