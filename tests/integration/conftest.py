"""Integration fixtures: one real local Ray for the session."""

import os

import pyarrow.dataset as pads
import pytest
import ray


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray; address="local" so a cluster started elsewhere on the machine is never used."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def read_output(path: str, filesystem=None):
    """The annotation dataset as a plain pyarrow table, the way users read it."""
    return pads.dataset(path, format="parquet", partitioning="hive", filesystem=filesystem).to_table()
