"""Transient object-store faults (HTTP 429, 503, dropped connections) on reads and writes: gcsfs retries
them with backoff, and the job succeeds with every image x task exactly once. The faults come from a
proxy in front of the real GCS emulator (tests/integration/fault_proxy.py)."""


import pytest

from pipelines.run import annotate
from schemas.job import JobConfig
from tests.integration.conftest import read_output, short_budgets
from tests.integration.corpus import write_image_tree
from tests.integration.fault_proxy import FAULT_KINDS, FaultPlan, FaultProxy, route_gcs_through
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration


def test_a_job_through_a_faulty_object_store_writes_every_row_once(tmp_path, gcs, ray_local, tiny_model_dir):
    sizes = write_image_tree(tmp_path / "images")
    uris = gcs.upload_tree(tmp_path / "images", "faults-test", "in")
    # Each faulted request succeeds on its retry (gcsfs waits 1-2 s before the first one).
    plan = {"read": FaultPlan(every=4, budget=3), "write": FaultPlan(every=2, budget=3)}
    with FaultProxy(gcs.endpoint, plan) as proxy, route_gcs_through(proxy.endpoint):
        summary = annotate(JobConfig(input="gs://faults-test/in", output="gs://faults-test/out",
                                     model=tiny_model_dir, tasks="detect,caption", classes="car",
                                     max_new_tokens=short_budgets("detect,caption")))
    print(f"requests {dict(proxy.seen)}, faults injected {dict(proxy.injected)}")
    # every kind of fault hit both directions, so the job really went through the proxy
    assert {(direction, kind) for direction in ("read", "write") for kind in FAULT_KINDS} <= set(proxy.injected)
    assert summary["status"] == "succeeded" and summary["rows"] == len(sizes) * 2

    table = read_output("faults-test/out", filesystem=gcs.filesystem())  # read back without the proxy
    assert_each_once(table, len(sizes) * 2)
    assert set(table.column("source_uri").to_pylist()) == set(uris)
    assert gcs.filesystem().exists("faults-test/out/_summary.json")
