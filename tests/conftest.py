"""Fixtures shared by unit and integration tests."""

from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

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


# The suite runs on two pytest-xdist workers (pyproject.toml: -n 2), a module's tests on one worker, so that
# module-scoped fixtures (a server, a cluster, a job's output) are built once. The modules that run jobs as
# users do (their own processes and Ray clusters, with nodes, actors or drivers killed mid-run, Airflow,
# vLLM) share one worker and run one after another: two of them at once on 2 cores made a killed actor's run
# 6x longer. The other worker takes the rest (the benchmarks too: they check their report, not their speed).
ONE_AT_A_TIME = {"test_multinode", "test_kills", "test_job_submit", "test_airflow_run", "test_vllm_engine"}


class ModuleScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with a module as the scope, and the ONE_AT_A_TIME modules as one scope."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return "one at a time" if Path(module).stem in ONE_AT_A_TIME else module


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    return ModuleScheduling(config, log)
