"""The README's demo, as a user runs it on a laptop: `jobs/annotate.py` starts its own local Ray."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import LabelRow
from tests.integration.conftest import read_output
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def readme_demo_commands() -> list[list[str]]:
    """The `.venv/bin/python jobs/...` steps of the README's first quick-start command."""
    lines = (REPO / "README.md").read_text().splitlines()
    command = lines[next(i for i, line in enumerate(lines) if line.startswith("# 1.")) + 1]
    steps = [shlex.split(step) for step in command.split(" && ")]
    return [step for step in steps if step[0] == ".venv/bin/python"]


PLANTED_TOKEN = "hf_plantedSecretToken1234567890abcdef"  # noqa: S105 - a fake, to catch leaks


def test_the_readme_demo_annotates_and_scores_the_bundled_shapes(tmp_path):
    # Credentials the job can see must never reach its logs, summary or rows. RAY_ADDRESS=local: a new local
    # Ray, as on a laptop where none runs; without an address Ray joins the newest Ray on the machine, which
    # may be someone else's (this machine is shared) or a cluster another test has not yet shut down.
    env = os.environ | {"RAY_ADDRESS": "local", "HF_TOKEN": PLANTED_TOKEN, "AWS_SECRET_ACCESS_KEY": PLANTED_TOKEN}
    output = str(tmp_path / "demo")
    annotate, evaluate = ([sys.executable] + [output if arg == "out/demo" else arg for arg in step[1:]]
                          for step in readme_demo_commands())
    assert annotate[1:2] == ["jobs/annotate.py"] and evaluate[1:2] == ["jobs/evaluate.py"]

    result = subprocess.run(annotate, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("annotated 6 images into 18 rows in ")
    summary = json.loads((tmp_path / "demo" / "_summary.json").read_text())
    assert summary["rows"] == 18 and summary["images"] == 6
    table = read_output(output)
    written = [result.stdout, result.stderr] + [p.read_bytes().decode("latin-1") for p in Path(output).rglob("*")
                                                 if p.is_file()]
    written.append(str(table.to_pylist()))  # Parquet pages may be compressed: check the values too
    assert not any(PLANTED_TOKEN in text for text in written)
    assert_each_once(table, 18)
    for row in table.to_pylist():
        LabelRow.model_validate(row, context={"classes": ("circle", "square", "triangle")})
        assert row["status"] in ("ok", "invalid_output") and (row["status"] == "ok") == (row["error"] is None)

    result = subprocess.run(evaluate, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "18 rows for 6 ground-truth images" in result.stdout
    assert "detect" in result.stdout and "mAP@.5" in result.stdout
