"""`python jobs/annotate.py ...` as a user runs it on a laptop: it starts its own local Ray."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import read_output

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_cli_on_the_bundled_samples(tmp_path, tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "jobs/annotate.py", "--input", "tests/data/samples", "--output", str(tmp_path / "out"),
         "--model", tiny_model_dir, "--tasks", "detect,caption,ocr", "--classes", "car,person", "--run-id", "cli"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("annotated 5 images into 15 rows in ")
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["rows"] == 15 and summary["images"] == 5 and summary["run_id"] == "cli"
    assert set(summary["rows_per_task_and_status"]) == {"detect", "caption", "ocr"}
    assert read_output(str(tmp_path / "out")).num_rows == 15
