"""Which parts load Ray or torch: the review tools and the pure modules must not (each checked in a fresh
interpreter, since this test process has loaded both)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "torch", "transformers")

CHECK = """
import importlib, runpy, sys
target = sys.argv[1]
if target.endswith(".py"):
    runpy.run_path(target, run_name="import_check")  # a job's imports, without running its main
else:
    importlib.import_module(target)
print(" ".join(sorted(name for name in sys.argv[2:] if name in sys.modules)))
"""


def heavy_modules_loaded_by(target: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", CHECK, target, *HEAVY], cwd=REPO, capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


@pytest.mark.parametrize("job", ["jobs/export.py", "jobs/report.py", "jobs/evaluate.py"])
def test_review_jobs_import_neither_ray_nor_torch(job):
    assert heavy_modules_loaded_by(job) == []


@pytest.mark.parametrize("module", [
    "pipelines.parse.detection", "pipelines.parse.segmentation", "pipelines.tasks.registry",
    "pipelines.stages.contract", "pipelines.stages.requests", "pipelines.stages.decode", "pipelines.stages.label",
    "pipelines.storage.output", "pipelines.storage.listing", "pipelines.driver.plan", "pipelines.review.export",
    "schemas",
])
def test_pure_and_storage_modules_import_neither_ray_nor_torch(module):
    assert heavy_modules_loaded_by(module) == []


def test_the_annotate_driver_imports_neither_torch_nor_transformers():
    """The driver (jobs/annotate.py, and the checks and dataset it builds: pipelines.run) reads what it checks
    from the checkpoint's small files; torch and transformers load only in the model actors."""
    assert heavy_modules_loaded_by("jobs/annotate.py") == ["ray"]
    assert heavy_modules_loaded_by("pipelines.run") == ["ray"]
