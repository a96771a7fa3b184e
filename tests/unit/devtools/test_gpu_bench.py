"""The GPU script's measurement, run on CPU with the tiny architecture: its figures, not its speed."""

import pytest

from pipelines.devtools import gpu_bench
from pipelines.devtools.gpu_bench import run_gpu_bench


def test_each_engine_and_size_gets_a_positive_rate_and_a_roofline_fraction():
    peak_tflops = 1e-5  # the tiny model's FLOPs are few: a small peak keeps the fraction readable
    (row,) = run_gpu_bench("tiny", sizes=(32,), images=3, batch_sizes=(2,), device="cpu", peak_tflops=peak_tflops,
                           engines=["transformers"])
    assert (row["engine"], row["quantization"], row["image_size"], row["failed_requests"]) == (
        "transformers", "none", 32, 0)
    assert row["images_per_s"] > 0 and row["gpu_peak_memory_gib"] is None
    achieved = row["images_per_s"] * row["gflops_per_image"] * 1e9
    assert row["roofline_fraction"] == pytest.approx(achieved / (peak_tflops * 1e12), rel=0.05)


def test_a_failing_setup_is_recorded_with_its_error_and_the_others_still_run(monkeypatch):
    def measure_in_this_process(fn, model_dir, size, engine, images, batch_size, device, peak_tflops, quantization,
                                dtype):
        if quantization == "4bit":
            raise RuntimeError("N must be divisible by block_n\nmore lines")
        return {"engine": engine, "quantization": quantization, "image_size": size}

    monkeypatch.setattr(gpu_bench, "in_fresh_process", measure_in_this_process)
    reported = []
    rows = gpu_bench.run_gpu_bench("tiny", sizes=(32,), device="cpu", engines=["transformers", "vllm"],
                                   quantizations=("none", "4bit", "8bit"), batch_sizes=(8, 32), report=reported.append)
    assert [(row["engine"], row["quantization"]) for row in rows] == [
        ("transformers", "none"), ("transformers", "none"), ("transformers", "4bit"), ("transformers", "4bit"),
        ("transformers", "8bit"), ("transformers", "8bit"), ("vllm", "none")]
    assert [row.get("batch_size") for row in rows[2:4]] == [8, 32]  # a failed setup's row still names its batch
    assert rows[2]["error"] == "RuntimeError: N must be divisible by block_n" and "error" not in rows[4]
    assert reported == rows
