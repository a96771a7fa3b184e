"""Model-only throughput per GPU for each engine, ready for the day a GPU is lent.

Needs torch and transformers, and the two small packages the model code shares with the pipeline's schemas
and parsers (pydantic, pycocotools); no Ray, and vLLM only where it is importable: it runs on a bare GPU
machine. The PaliGemma 2 3B architecture (random weights, bf16 on CUDA) at each
resolution, every answer forced to its budget (`detect car` 40 tokens, `caption en` 32, as the CPU
figures in docs/performance.md), all requests handed to the engine at once after a warm-up pass, each
engine in a fresh process (its load time and memory peaks its own). The transformers engine is also
measured at each `--quantization` asked for (bitsandbytes, where it is installed). A setup that fails
(no bitsandbytes, too little memory) is recorded with its error and the others still run.
Images per second per GPU, and the fraction of the roofline: achieved linear-layer FLOP/s over the
accelerator's peak (`flops_per_image` counts the vision tower, each prefill and each decoding step).
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import PaliGemmaConfig

from pipelines.devtools.bench_models import flops_per_image, save_benchmark_model
from pipelines.devtools.measure import in_fresh_process, peak_rss_mib
from pipelines.model.generation import GenerationRequest
from pipelines.model.hf_engine import TransformersEngine
from pipelines.model.load import load_processor

REQUESTS = (("detect", "detect car", 40), ("caption", "caption en", 32))


def engines_here() -> list[str]:
    return ["transformers"] + (["vllm"] if importlib.util.find_spec("vllm") else [])


def _engine(name: str, model_dir: str, device: torch.device, batch_size: int, budget: int, quantization: str,
            dtype: str = "auto"):
    if name == "vllm":
        from pipelines.model.vllm_engine import VllmEngine
        from schemas.job import VllmSettings

        return VllmEngine(model_dir, None, device, dtype, VllmSettings(), budget, fixed_length=True)
    return TransformersEngine(model_dir, None, device, dtype, batch_size, fixed_length=True,
                              quantization=quantization)


def measure(model_dir: str, image_size: int, engine: str, images: int, batch_size: int, device: str,
            peak_tflops: float | None, quantization: str = "none", dtype: str = "auto") -> dict:
    """One engine at one resolution: load time, images/s, memory peaks, roofline fraction."""
    target = torch.device(device)
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8) for _ in range(images)]
    requests = [GenerationRequest(i, task, prompt, image, budget)
                for task, prompt, budget in REQUESTS for i, image in enumerate(pixels)]
    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    loaded = _engine(engine, str(model_dir), target, batch_size, max(budget for _, _, budget in REQUESTS),
                     quantization, dtype)
    load_s = time.perf_counter() - started
    # Warm-up (kernels, allocator): two short requests, which on a 2-core CPU take minutes less than full ones.
    loaded.generate([dataclasses.replace(request, max_new_tokens=2) for request in requests[:2]])
    if target.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    answers = loaded.generate(requests)
    if target.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokenizer = load_processor(str(model_dir)).tokenizer
    config = PaliGemmaConfig.from_pretrained(model_dir)
    flops = flops_per_image(config, [len(tokenizer(prompt + "\n").input_ids) + 1 for _, prompt, _ in REQUESTS],
                            [budget for _, _, budget in REQUESTS])["total"]
    rate = images / seconds
    return {
        "engine": engine, "quantization": quantization, "dtype": dtype, "image_size": image_size, "images": images,
        "batch_size": batch_size if engine == "transformers" else None,
        "load_s": round(load_s, 2), "seconds": round(seconds, 3), "images_per_s": round(rate, 3),
        "seconds_per_image": round(seconds / images, 3),
        "failed_requests": sum(isinstance(answer, BaseException) for answer in answers),
        "first_error": next((f"{type(a).__name__}: {str(a).strip()[:300]}" for a in answers
                             if isinstance(a, BaseException)), None),
        "gflops_per_image": round(flops / 1e9, 6),
        "roofline_fraction": round(rate * flops / (peak_tflops * 1e12), 4) if peak_tflops else None,
        "gpu_peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if target.type == "cuda" else None,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def run_gpu_bench(model: str = "paligemma2-3b", sizes: tuple[int, ...] = (224, 448), images: int = 64,
                  batch_sizes: tuple[int, ...] = (32,), device: str = "cuda", peak_tflops: float | None = 989.0,
                  engines: list[str] | None = None, quantizations: tuple[str, ...] = ("none",),
                  dtype: str = "auto", report: Callable[[dict], None] | None = None) -> list[dict]:
    """`measure` for every engine here (transformers at each quantization and batch size) and every resolution,
    each in a fresh process (its memory its own); a setup that fails gives a row with its `error`. `report` is
    called with each row as it is measured, so a run cut short still leaves what it measured."""
    setups = [(engine, quantization, batch_size) for engine in engines or engines_here()
              for quantization in (quantizations if engine == "transformers" else ("none",))
              for batch_size in (batch_sizes if engine == "transformers" else batch_sizes[:1])]
    results = []
    with tempfile.TemporaryDirectory(prefix="paligemma-gpu-bench-") as workdir:
        for size in sizes:
            model_dir = str(_save_random_model(model, size, Path(workdir) / f"{model}-{size}", device))
            for engine, quantization, batch_size in setups:
                try:
                    row = in_fresh_process(measure, model_dir, size, engine, images, batch_size, device,
                                           peak_tflops, quantization, dtype)
                except Exception as err:  # noqa: BLE001 - recorded; the other setups still run
                    row = {"engine": engine, "quantization": quantization, "image_size": size,
                           "batch_size": batch_size,
                           "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"}
                results.append(row)
                if report:
                    report(row)
            shutil.rmtree(model_dir)
    return results


def _save_random_model(model: str, size: int, output_dir: Path, device: str) -> Path:
    """On CUDA the random weights are drawn on the GPU in bf16 (seconds, where a 3B model's fp32 init on the
    CPU takes minutes) and the GPU's copy is freed before the measuring processes start; elsewhere fp32."""
    built = save_benchmark_model(model, size, output_dir, device="cuda" if device == "cuda" else "cpu")
    if device == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    return built
