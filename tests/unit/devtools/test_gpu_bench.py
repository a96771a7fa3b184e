"""The GPU script's measurement, run on CPU with the tiny architecture: its figures, not its speed."""

import pytest

from pipelines.devtools.gpu_bench import run_gpu_bench


def test_each_engine_and_size_gets_a_positive_rate_and_a_roofline_fraction():
    peak_tflops = 1e-5  # the tiny model's FLOPs are few: a small peak keeps the fraction readable
    (row,) = run_gpu_bench("tiny", sizes=(32,), images=3, batch_size=2, device="cpu", peak_tflops=peak_tflops,
                           engines=["transformers"])
    assert (row["engine"], row["quantization"], row["image_size"], row["failed_requests"]) == (
        "transformers", "none", 32, 0)
    assert row["images_per_s"] > 0 and row["gpu_peak_memory_gib"] is None
    achieved = row["images_per_s"] * row["gflops_per_image"] * 1e9
    assert row["roofline_fraction"] == pytest.approx(achieved / (peak_tflops * 1e12), rel=0.05)


def test_a_failing_setup_is_recorded_with_its_error_not_fatal():
    """Each setup costs a fresh process: one that fails at load keeps this unit test short (the quantized
    engine itself: tests/unit/model/test_quantization.py, tests/integration/test_quantization.py)."""
    (row,) = run_gpu_bench("tiny", sizes=(32,), images=2, batch_size=2, device="cpu", peak_tflops=None,
                           engines=["transformers"], quantizations=("3bit",))
    assert (row["engine"], row["quantization"]) == ("transformers", "3bit")
    assert "quantization must be one of none, 8bit, 4bit" in row["error"]
