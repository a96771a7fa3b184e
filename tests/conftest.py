"""Fixtures shared by unit and integration tests."""

from pathlib import Path

import pytest

from pipelines.devtools.tiny_model import save_tiny_paligemma
from pipelines.review.report import build_report
from tests.labelled import shapes_rows, write_rows

# The committed checkpoint trained on synthetic shapes by jobs/train_shapes.py (README, "Measuring quality").
SHAPES_MODEL = Path(__file__).resolve().parent / "data" / "shapes-paligemma"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random PaliGemma saved with save_pretrained, loaded by path like a real checkpoint."""
    return str(save_tiny_paligemma(tmp_path_factory.mktemp("models") / "tiny-paligemma"))


@pytest.fixture(scope="session")
def labelled(tmp_path_factory):
    """A small finished annotation dataset of shapes scenes (tests/labelled.py): (its path, its LabelRows, the
    COCO ground truth they were made from)."""
    root = tmp_path_factory.mktemp("labelled")
    rows, truth = shapes_rows(root / "shapes")
    return write_rows(rows, root / "dataset"), rows, truth


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    """The HTML report of a small labelled dataset: (its directory, the rows, build_report's summary)."""
    root = tmp_path_factory.mktemp("report")
    rows, truth = shapes_rows(root / "shapes")
    summary = build_report(str(write_rows(rows, root / "dataset")), root / "report", samples=4)
    return root / "report", rows, summary
