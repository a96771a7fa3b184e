"""Synthetic shapes -> the pipeline -> jobs/evaluate.py: every shard format joins its ground truth."""

import json
import subprocess
import sys

import pytest

from pipelines.devtools.shapes import write_shapes
from pipelines.review.evaluate import evaluate_rows
from pipelines.run import annotate
from pipelines.storage.output import read_annotations
from schemas.job import JobConfig
from tests.integration.conftest import short_budgets
from tests.jobs import REPO

pytestmark = pytest.mark.integration

LAYOUT = {"images": "images", "webdataset": "shards", "parquet": "parquet"}


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_every_ground_truth_image_is_scored(tmp_path, ray_local, tiny_model_dir, fmt):
    write_shapes(str(tmp_path / "shapes"), count=6, seed=7, fmt=fmt, shard_size=4)
    extra = {"uri_column": "uri"} if fmt == "parquet" else {}
    cfg = JobConfig(input=str(tmp_path / "shapes" / LAYOUT[fmt]), output=str(tmp_path / "out"), model=tiny_model_dir,
                    tasks="detect,caption", classes="circle,square,triangle", batch_size=4,
                    max_new_tokens=short_budgets("detect,caption"), **extra)
    annotate(cfg)
    ground_truth = json.loads((tmp_path / "shapes" / "ground_truth.json").read_text())
    report = evaluate_rows(read_annotations(cfg.output).to_pylist(), ground_truth)
    assert report["images"] == 6 and report["rows"] == 12 and report["unknown_images"] == 0
    assert report["missing_images"] == {"caption": 0, "detect": 0}
    # a random model scores nothing, but every caption and image was looked at
    assert report["caption"]["captions"] == 6 and 0 <= report["detect"]["mAP_50"] <= 1


def test_evaluate_exits_cleanly_when_the_ground_truth_matches_nothing(labelled, tmp_path):
    """The crash of issue 29: a read through the fsspec wrapper on pyarrow's threads, then a quick exit (nothing
    to score), aborted with exit 134 in most runs. Six runs of the command as users run it, each exit 0."""
    dataset, _, _ = labelled
    write_shapes(str(tmp_path / "other"), count=3, seed=99, fmt="images")  # other names: nothing joins
    command = [sys.executable, str(REPO / "jobs" / "evaluate.py"), "--predictions", str(dataset),
               "--ground-truth", str(tmp_path / "other" / "ground_truth.json")]
    for _ in range(6):
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "missing images: 3" in done.stdout
