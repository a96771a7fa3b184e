"""Shared by the review and export tests: label-studio-sdk's brush converter."""

import copy
import json
import os

import pytest

from pipelines.review.export import export


@pytest.fixture(scope="session")
def brush():
    """The SDK's converter (installed without its many dependencies in CI, see .ci/run)."""
    if os.environ.get("CI"):
        import label_studio_sdk.converter.brush as converter
    else:
        converter = pytest.importorskip("label_studio_sdk.converter.brush",
                                        reason="pip install --no-deps label-studio-sdk")
    return converter


@pytest.fixture(scope="session")
def reviewed(labelled, tmp_path_factory):
    """The labelled dataset exported to Label Studio, each task 'reviewed' by accepting its prediction:
    (the dataset's rows as dicts, the Label Studio JSON export's tasks)."""
    dataset, rows, _ = labelled
    path = tmp_path_factory.mktemp("ls-truth") / "tasks.json"
    export("labelstudio", str(dataset), str(path))
    tasks = json.loads(path.read_text())
    for number, task in enumerate(tasks):
        task["id"] = number
        task["annotations"] = [{"id": 1, "result": copy.deepcopy(task["predictions"][0]["result"]),
                                "was_cancelled": False, "updated_at": "2026-12-01T10:00:00Z"}]
    return [row.model_dump() for row in rows], tasks
