"""Fixtures shared by unit and integration tests."""

import pytest

from pipelines.tiny_model import save_tiny_paligemma


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random PaliGemma saved with save_pretrained, loaded by path like a real checkpoint."""
    return str(save_tiny_paligemma(tmp_path_factory.mktemp("models") / "tiny-paligemma"))
