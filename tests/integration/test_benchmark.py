"""The throughput benchmark end to end on the tiny model: its report, not its speed."""

import json

import pytest

from pipelines.devtools import benchmark, measure
from pipelines.devtools.benchmark import run_benchmark, table, write_results
from schemas.benchmark import BenchmarkConfig
from tests.integration.conftest import read_output

pytestmark = pytest.mark.integration


@pytest.fixture
def in_this_process(monkeypatch, ray_local):
    """Each measurement in this process, on the session's Ray, not in a fresh interpreter with a Ray of its
    own (10-15 s each here): these tests check what the report holds, not the figures."""
    monkeypatch.setattr(measure, "in_fresh_process", lambda fn, *args: fn(*args))
    monkeypatch.setattr(benchmark, "in_fresh_process", lambda fn, *args: fn(*args))


def test_benchmark_reports_consistent_positive_figures(tmp_path, in_this_process):
    cfg = BenchmarkConfig(output=str(tmp_path / "bench.json"), model="tiny", image_size=32, images=3,
                          tasks=["detect", "caption"], classes=["car"], batch_size=2, sweep=[1, 2],
                          workdir=str(tmp_path / "work"))
    results = run_benchmark(cfg)
    path, png = write_results(results, cfg.output)
    saved = json.loads(path.read_text())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for key in ("naive_images_per_s", "ceiling_images_per_s", "pipeline_images_per_s",
                "pipeline_end_to_end_images_per_s"):
        assert saved[key] > 0
    assert saved["ceiling_images_per_s"] == max(saved["ceiling_images_per_s_by_batch_size"].values())
    assert saved["pipeline_vs_naive"] == pytest.approx(saved["pipeline_images_per_s"] / saved["naive_images_per_s"],
                                                       rel=1e-2)
    assert saved["pipeline_vs_ceiling"] == pytest.approx(
        saved["pipeline_images_per_s"] / saved["ceiling_images_per_s"], rel=1e-2)
    # the pipeline labelled every image once per request, and its steady window lies inside its run
    assert saved["pipeline"]["images"] == 3 and saved["pipeline"]["rows"] == 3 * len(saved["requests_per_image"])
    assert 0 < saved["pipeline"]["steady_seconds"] <= saved["pipeline"]["seconds"]
    operators = " ".join(stage["operator"] for stage in saved["pipeline_stages"])
    assert "ReadBinary" in operators and "GenerateStage" in operators and "Write" in operators
    memory = saved["peak_memory_mib"]
    assert memory["pipeline_driver"] > 0 and memory["naive_process"] > 0
    assert any("GenerateStage" in name and mib > 0 for name, mib in memory["pipeline_workers"].items())
    assert saved["model_gflops_per_image"]["total"] > 0
    assert "pipeline, batch 2" in table(saved)


def test_the_feeding_check_compares_the_pipeline_without_a_model_with_a_plain_loop(tmp_path, in_this_process):
    from pipelines.devtools.feeding import run_feeding

    # 21 images added: their decode and rows cost well above the fixed cost's noise (3 added once read -0.02 s)
    report = run_feeding(tmp_path, {"png-0.3MP": 3}, model_sizes=(224,), growth=8)
    (row,) = report["feeding"]
    assert row["images"] == [3, 24] and row["pipeline_images_per_cpu_s"] > 0 and row["plain_images_per_cpu_s"] > 0
    assert row["pipeline_vs_plain"] == pytest.approx(row["pipeline_images_per_cpu_s"] / row["plain_images_per_cpu_s"],
                                                     rel=1e-2)
    assert row["cores_per_gpu"] == pytest.approx(row["roofline_images_per_s"] / row["pipeline_images_per_cpu_s"],
                                                 rel=1e-2)
    # every image went through label and write as an empty answer of the model-less stage: an empty
    # detection is valid, an empty caption is not
    written = read_output(str(tmp_path / "out-png-0.3MP"))
    statuses = set(zip(written.column("task").to_pylist(), written.column("status").to_pylist()))
    assert written.num_rows == 24 * 2 and statuses == {("detect", "ok"), ("caption", "invalid_output")}
