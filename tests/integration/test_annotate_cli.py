"""`python jobs/annotate.py ...` as a user runs it on a laptop: it starts its own local Ray."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import LabelRow
from tests.integration.conftest import read_output

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_cli_on_the_bundled_samples(tmp_path, tiny_model_dir):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "jobs/annotate.py", "--input", "tests/data/samples", "--output", str(tmp_path / "out"),
         "--model", tiny_model_dir, "--tasks", "segment,detect,caption", "--classes", "car,person", "--run-id", "cli"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("annotated 5 images into 15 rows in ")
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["rows"] == 15 and summary["images"] == 5 and summary["run_id"] == "cli"
    assert set(summary["rows_per_task_and_status"]) == {"segment", "detect", "caption"}
    table = read_output(str(tmp_path / "out"))
    assert table.num_rows == 15
    keys = list(zip(*(table.column(c).to_pylist() for c in ("source_uri", "task"))))
    assert len(set(keys)) == 15
    # a random model's segment answers are noise: each row is a valid mask row or says why not
    for row in table.to_pylist():
        validated = LabelRow.model_validate(row, context={"classes": ("car", "person")})
        assert row["status"] in ("ok", "invalid_output")
        assert (row["status"] == "ok") == (row["error"] is None)
        if row["task"] != "segment":
            assert validated.masks == []
