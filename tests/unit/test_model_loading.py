"""Weights load only from safetensors, and never with remote code."""

import ast
from pathlib import Path

import pytest
import torch

from pipelines.model import ModelLoadError, load_model
from pipelines.tiny_model import build_tiny_paligemma, save_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_a_pickle_checkpoint_is_refused_with_the_reason(tmp_path):
    model, processor = build_tiny_paligemma()
    save_checkpoint(model, processor, tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # what unpickling would execute
    with pytest.raises(ModelLoadError, match=r"only pickle weights \(pytorch_model.bin\).*can run arbitrary code"):
        load_model(str(tmp_path), None, torch.device("cpu"))


def test_the_same_checkpoint_in_safetensors_loads(tmp_path):
    model, processor = build_tiny_paligemma()
    save_checkpoint(model, processor, tmp_path)
    assert load_model(str(tmp_path), None, torch.device("cpu")).training is False


def test_no_code_asks_for_remote_code():
    """`trust_remote_code` is never set true, in any call of the library, jobs or cluster files."""
    for path in [*REPO.glob("pipelines/**/*.py"), *REPO.glob("jobs/*.py"), *REPO.glob("cluster/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, path
