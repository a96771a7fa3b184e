"""--plan: what a run would do, counted from listings and metadata, with no model and no Ray."""

from pathlib import Path

import pytest
import ray

from pipelines.driver.plan import NO_THROUGHPUT, count_inputs
from pipelines.run import describe, run_job
from pipelines.storage.inputs import resolve_inputs
from tests.integration.corpus import write_parquet, write_webdataset

SAMPLES = str(Path(__file__).resolve().parents[2] / "data" / "samples")


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("--plan started Ray"))


def test_counts_per_input_kind(tmp_path):
    assert count_inputs(resolve_inputs(SAMPLES)) == (5, 0)
    write_webdataset(tmp_path / "shards")  # 5 samples, one without an image member
    assert count_inputs(resolve_inputs(str(tmp_path / "shards"))) == (5, 0)
    write_parquet(tmp_path / "pq" / "part.parquet")  # 3 rows, 2 with a question
    assert count_inputs(resolve_inputs(str(tmp_path / "pq")), "question") == (3, 2)


def test_plan_counts_requests_without_loading_the_model(tmp_path):
    flags = {"input": SAMPLES, "output": str(tmp_path / "out"), "tasks": "detect,caption,answer",
             "classes": "car", "questions": "what?|why?", "model": str(tmp_path / "no-such-model"), "plan": True,
             "batch_size": 4}
    summary = run_job(flags)
    assert summary["status"] == "planned" and summary["exit_code"] == 0
    assert (summary["images"], summary["input_files"], summary["input_kind"]) == (5, 5, "images")
    assert summary["requests_per_task"] == {"detect": 5, "caption": 5, "answer": 10}
    assert summary["batch_size"] == 4
    assert summary["requests"] == 20 and summary["generate_calls_at_least"] == 2 + 2 + 3
    assert summary["estimated_gpu_hours"] is None and summary["estimate_note"] == NO_THROUGHPUT
    assert "GPU-hours unknown" in describe(summary)
    assert not (tmp_path / "out").exists()

    assert summary["engine"] == "transformers"
    # planning needs no engine: --engine vllm plans where vLLM is not installed
    assert run_job({**flags, "engine": "vllm"})["engine"] == "vllm"

    timed = run_job({**flags, "requests_per_gpu_s": 0.002})
    assert timed["estimated_gpu_hours"] == round(20 / 0.002 / 3600, 3) and timed["estimate_note"] is None
    assert "about 2.778 GPU-hours" in describe(timed)


def test_plan_counts_per_image_questions(tmp_path):
    write_parquet(tmp_path / "pq" / "part.parquet")
    summary = run_job({"input": str(tmp_path / "pq"), "output": str(tmp_path / "out"), "tasks": "answer",
                       "questions": "what?", "question_column": "question", "id_column": "id", "plan": True})
    assert summary["requests_per_task"] == {"answer": 3 + 2}


def test_plan_reports_each_tasks_token_budget_with_overrides(tmp_path):
    flags = {"input": SAMPLES, "output": str(tmp_path / "out"), "tasks": "detect,caption", "classes": "car,person",
             "plan": True}
    assert run_job(flags)["max_new_tokens_per_task"] == {"detect": 16 + 2 * 360, "caption": 32}
    summary = run_job({**flags, "max_new_tokens": "detect=900"})
    assert summary["max_new_tokens_per_task"] == {"detect": 900, "caption": 32}
    refused = run_job({**flags, "max_new_tokens": "ocr=10"})
    assert refused["status"] == "refused" and "--max-new-tokens names ocr" in refused["error"]


def test_plan_gives_the_model_weights_per_actor_for_dtype_and_quantization(tmp_path, tiny_model_dir):
    flags = {"input": SAMPLES, "output": str(tmp_path / "out"), "tasks": "caption", "model": tiny_model_dir,
             "plan": True}
    sizes = {}
    for dtype, quantization in (("float32", "none"), ("bfloat16", "none"), ("float32", "8bit"), ("float32", "4bit")):
        summary = run_job({**flags, "dtype": dtype, "quantization": quantization})
        assert (summary["quantization"], summary["model_weights_dtype"]) == (quantization, dtype)
        sizes[dtype, quantization] = summary["model_weights_mib_per_actor"]
    assert sizes["float32", "none"] > sizes["float32", "8bit"] > sizes["float32", "4bit"]
    assert sizes["bfloat16", "none"] == pytest.approx(sizes["float32", "none"] / 2, rel=1e-3)
    # auto: as on a GPU, bfloat16 and the GPU's batch for the checkpoint's input size (the tiny model's 32 px)
    assert run_job(flags)["model_weights_dtype"] == "bfloat16"
    assert run_job(flags)["batch_size"] == 128 and run_job({**flags, "device": "cpu"})["batch_size"] == 16
    missing = run_job({**flags, "model": str(tmp_path / "no-such-model")})
    assert missing["model_weights_mib_per_actor"] is None and "does not exist" in missing["model_weights_note"]
    assert missing["batch_size"] is None and missing["generate_calls_at_least"] is None  # it depends on the model
