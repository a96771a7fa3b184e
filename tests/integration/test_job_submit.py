"""`ray job submit -- python jobs/annotate.py ...` against a real `ray start --head` with token auth."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import read_output
from tests.integration.ray_head import RAY_EXE, run_ray_head

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "samples"


def test_submitted_job_annotates_the_samples(tmp_path, tiny_model_dir):
    output = tmp_path / "out"  # absolute: the job runs in Ray's copy of the working dir
    with run_ray_head(tmp_path / "head") as head:
        result = subprocess.run(
            [str(RAY_EXE), "job", "submit", "--address", head.address, "--working-dir", str(REPO), "--",
             "python", "jobs/annotate.py", "--input", str(SAMPLES), "--output", str(output),
             "--model", tiny_model_dir, "--tasks", "detect,caption", "--classes", "car,person"],
            env={**os.environ, **head.env}, capture_output=True, text=True, timeout=300,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "annotated 5 images into 10 rows" in result.stdout
    table = read_output(str(output))
    keys = list(zip(*(table.column(c).to_pylist() for c in ("image_id", "task"))))
    assert len(keys) == len(set(keys)) == 10
