"""Integration fixtures: one GCS emulator and one real local Ray for the session."""

import pyarrow.dataset as pads
import pytest
import ray

from tests.integration.gcs_emulator import run_gcs_emulator
from tests.integration.ray_head import run_ray_head

# The tiny random model never ends an answer, so each one runs to its task's whole budget (detect: 376 tokens
# a class, segment: 632): most of a test's time, and nothing the tests on it check. They cap the budgets.
SHORT_ANSWERS = {"detect": 16, "segment": 40, "caption": 12, "ocr": 12, "answer": 8}


def short_budgets(tasks: str) -> str:
    """`--max-new-tokens` for `tasks` (comma-separated) with SHORT_ANSWERS' budgets."""
    return ",".join(f"{task}={SHORT_ANSWERS[task]}" for task in tasks.split(","))


@pytest.fixture(scope="session")
def gcs():
    """A real GCS emulator on 127.0.0.1, with gcsfs pointed at it in this process."""
    with run_gcs_emulator() as emulator, emulator.activate():
        yield emulator


@pytest.fixture(scope="session")
def ray_local(gcs):
    """A real local Ray. Started after the emulator's environment is exported, so workers talk to
    it too; address="local" so a cluster started elsewhere on the machine is never used."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def head(tmp_path_factory):
    """A real `ray start --head` with token auth, for jobs run the way users run them (submitted, or a
    driver started with --address), shared by the modules that need one."""
    with run_ray_head(tmp_path_factory.mktemp("head")) as started:
        yield started


def read_output(path: str, filesystem=None):
    """The annotation dataset as a plain pyarrow table, the way users read it."""
    return pads.dataset(path, format="parquet", partitioning="hive", filesystem=filesystem).to_table()
