"""Weights load only from safetensors, and never with remote code."""

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import ray
import torch

from pipelines.devtools.tiny_model import build_tiny_paligemma, save_checkpoint, save_tiny_paligemma
from pipelines.model.load import ModelLoadError, load_model, load_processor
from tests.jobs import load_job

REPO = Path(__file__).resolve().parents[3]
PICKLE_REFUSED = r"only pickle weights \(pytorch_model.bin\).*can run arbitrary code.*Convert them to safetensors"


def pickle_checkpoint(directory: Path) -> Path:
    """A tiny checkpoint whose weights are a `torch.save`d state dict, as older checkpoints ship them."""
    model, processor = build_tiny_paligemma()
    save_checkpoint(model, processor, directory)
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")  # what unpickling would execute
    return directory


def test_a_pickle_checkpoint_is_refused_with_the_reason(tmp_path):
    pickle_checkpoint(tmp_path)
    with pytest.raises(ModelLoadError, match=PICKLE_REFUSED):
        load_model(str(tmp_path), None, torch.device("cpu"))
    with pytest.raises(ModelLoadError, match=PICKLE_REFUSED):  # the driver's check, before Ray starts
        load_processor(str(tmp_path))


def test_the_same_checkpoint_in_safetensors_loads(tmp_path):
    model, processor = build_tiny_paligemma()
    save_checkpoint(model, processor, tmp_path)
    assert load_model(str(tmp_path), None, torch.device("cpu")).training is False


def test_no_code_asks_for_remote_code():
    """`trust_remote_code` is never set to anything but a literal False, in any file of the repository:
    not as a keyword, not through a dict of keyword arguments, not in a config file."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    checked = 0
    for name in tracked:
        path = REPO / name
        if REPO / name == Path(__file__).resolve() or not path.is_file() or "/data/" in f"/{name}":
            continue
        if path.suffix == ".py":
            checked += 1
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                    assert isinstance(node.value, ast.Constant) and node.value.value is False, path
                assert not (isinstance(node, ast.Constant) and node.value == "trust_remote_code"), path
        elif path.suffix in (".yaml", ".yml", ".json", ".toml", ".txt", ".cfg"):
            assert "trust_remote_code" not in path.read_text().lower(), path
    assert checked > 50  # the listing found the code


def test_a_checkpoint_asking_for_remote_code_runs_none_of_it(tmp_path):
    # config.json names a module of the checkpoint's own (auto_map); transformers would import it, and so
    # run it, for AutoModel...from_pretrained(..., trust_remote_code=True). Importing it leaves a marker.
    model_dir = save_tiny_paligemma(tmp_path / "model", with_vae=False)
    marker = tmp_path / "remote-code-ran"
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "remote_code.Config", "AutoModelForImageTextToText": "remote_code.Model"}
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "remote_code.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import PaliGemmaConfig as Config, PaliGemmaForConditionalGeneration as Model\n")
    load_processor(str(model_dir))
    assert load_model(str(model_dir), None, torch.device("cpu")).training is False
    assert not marker.exists()


def test_the_job_refuses_a_pickle_checkpoint_before_ray_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    model_dir = pickle_checkpoint(tmp_path / "model")
    capsys.readouterr()  # saving it printed progress bars
    argv = ["--input", str(REPO / "tests" / "data" / "samples"), "--output", str(tmp_path / "out"),
            "--model", str(model_dir), "--tasks", "caption"]
    assert load_job().main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(PICKLE_REFUSED, err) and err.startswith("error: ")
