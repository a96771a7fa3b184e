"""Throughput of the pipeline against the naive model-card loop and the model-only ceiling.

Three ways label the same images with the same checkpoint (random weights of a realistic shape,
saved with `save_pretrained` and loaded by path, every answer forced to its task's full token
budget so random weights cost what real answers do):

- naive: the model card's loop, per image and per task: PIL open, processor, `generate` of one.
- ceiling: images decoded in memory beforehand, batched `generate` per task in a plain loop,
  for each batch size of the sweep; the best is the ceiling. No Ray.
- pipeline: the job's own stages (Ray Data read -> decode -> generate -> parse -> write).

Each runs in a fresh process, so its peak RSS is its own. Naive and ceiling are timed from the
first image with the model already loaded (their load time is reported beside). The pipeline,
likewise, from the start of its first model-stage task (its actor up, model loaded) to the last
file written (`pipeline_images_per_s`); and also from building the dataset, with actor start and
model load inside (`pipeline_end_to_end_images_per_s`: a fixed cost of a few seconds per run,
which many images amortise). Ray's own start is left out: a cluster starts once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pipelines.devtools.measure import in_fresh_process, peak_rss_mib
from pipelines.devtools.timed_pipeline import run_pipeline
from schemas.benchmark import BenchmarkConfig
from schemas.job import PromptOptions

MEMORY_CHECK_SIZES = (1_000, 10_000)
MEMORY_CHECK_BATCH = 64
SHAPES_CHECKPOINT = Path(__file__).resolve().parents[2] / "tests" / "data" / "shapes-paligemma"


def _requests(tasks: list[str], options: PromptOptions) -> list[tuple[str, int]]:
    """(prompt, token budget) of every request one image makes."""
    from pipelines.tasks.registry import check_tasks

    return [(prompt, task.budget(options))
            for task in check_tasks(tasks, options) for prompt in task.build_prompts(options, None)]


def _load(model_dir: str, device: str):
    import torch

    from pipelines.model.load import load_model, load_processor

    started = time.perf_counter()
    processor = load_processor(model_dir)
    model = load_model(model_dir, None, torch.device(device))
    return processor, model, time.perf_counter() - started


def _generate(model, inputs, budget: int):
    import torch

    inputs.pop("labels", None)
    inputs = inputs.to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=budget, min_new_tokens=budget, do_sample=False)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return out


def run_naive(model_dir: str, paths: list[str], requests: list[tuple[str, int]], device: str) -> dict:
    """The model card's loop: one image, one prompt, one `generate` at a time."""
    from PIL import Image

    processor, model, load_s = _load(model_dir, device)
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
        for prompt, budget in requests:
            _generate(model, processor(text="<image>" + prompt, images=image, return_tensors="pt"), budget)
    return {"load_s": load_s, "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}


def run_ceiling(model_dir: str, paths: list[str], requests: list[tuple[str, int]], device: str,
                batch_sizes: list[int]) -> dict:
    """Batched `generate` per task over images decoded beforehand, for each batch size."""
    from pipelines.model.load import image_size_of
    from pipelines.stages.decode import decode_image

    processor, model, load_s = _load(model_dir, device)
    size, resample = image_size_of(processor), int(processor.image_processor.resample)
    pixels = [decode_image(Path(path).read_bytes(), size, resample)[0] for path in paths]
    seconds = {}
    for batch_size in batch_sizes:
        started = time.perf_counter()
        for prompt, budget in requests:
            for start in range(0, len(pixels), batch_size):
                chunk = pixels[start:start + batch_size]
                inputs = processor(text=["<image>" + prompt] * len(chunk), images=chunk, do_resize=False,
                                   return_tensors="pt")
                _generate(model, inputs, budget)
        seconds[batch_size] = time.perf_counter() - started
    return {"load_s": load_s, "seconds_by_batch_size": seconds, "peak_rss_mib": peak_rss_mib()}


def write_images(directory: Path, count: int, seed: int = 0) -> list[str]:
    """`count` JPEG photos-to-be: synthetic shape scenes of 320-640 px a side."""
    from pipelines.devtools.shapes import draw_scene

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = directory / f"image-{index:06d}.jpg"
        draw_scene(rng, size_range=(320, 640), noise=8).image.save(path, quality=90)
        paths.append(str(path))
    return paths


def _rate(images: int, seconds: float) -> float:
    return round(images / seconds, 4) if seconds > 0 else 0.0


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Measure the three ways on the same images; write JSON and the plot; return the results."""
    from transformers import PaliGemmaConfig

    from pipelines.devtools.bench_models import flops_per_image, save_benchmark_model

    options = PromptOptions(classes=tuple(cfg.classes))
    requests = _requests(cfg.tasks, options)
    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="paligemma-bench-"))
    try:
        model_dir = str(save_benchmark_model(cfg.model, cfg.image_size, workdir / "model", cfg.device))
        paths = write_images(workdir / "images", cfg.images)
        naive = in_fresh_process(run_naive, model_dir, paths, requests, cfg.device)
        ceiling = in_fresh_process(run_ceiling, model_dir, paths, requests, cfg.device, cfg.sweep)
        pipeline = in_fresh_process(run_pipeline, model_dir, str(workdir / "images"), str(workdir / "labels"),
                                     cfg.tasks, cfg.classes, cfg.batch_size, cfg.num_actors,
                                     cfg.share_vision == "on", True, None, cfg.torch_threads)
        from pipelines.model.load import load_processor

        tokenizer = load_processor(model_dir).tokenizer
        prompt_tokens = [len(tokenizer(prompt + "\n").input_ids) + 1 for prompt, _ in requests]  # + <bos>
        flops = flops_per_image(PaliGemmaConfig.from_pretrained(model_dir), prompt_tokens,
                                [budget for _, budget in requests])
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return summarize_results(cfg, requests, naive, ceiling, pipeline, flops)


def summarize_results(cfg: BenchmarkConfig, requests, naive: dict, ceiling: dict, pipeline: dict,
                      flops: dict) -> dict:
    n = cfg.images
    sweep = {int(bs): _rate(n, s) for bs, s in ceiling["seconds_by_batch_size"].items()}
    best_batch = max(sweep, key=sweep.get)
    naive_rate, ceiling_rate = _rate(n, naive["seconds"]), sweep[best_batch]
    pipeline_rate = _rate(n, pipeline["steady_seconds"])
    results = {
        "config": cfg.model_dump(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "requests_per_image": [{"prompt": p, "new_tokens": b} for p, b in requests],
        "naive_images_per_s": naive_rate,
        "ceiling_images_per_s": ceiling_rate,
        "ceiling_batch_size": best_batch,
        "ceiling_images_per_s_by_batch_size": sweep,
        "pipeline_images_per_s": pipeline_rate,
        "pipeline_end_to_end_images_per_s": _rate(n, pipeline["seconds"]),
        "pipeline_vs_naive": round(pipeline_rate / naive_rate, 3) if naive_rate else None,
        "pipeline_vs_ceiling": round(pipeline_rate / ceiling_rate, 3) if ceiling_rate else None,
        "naive": {k: v for k, v in naive.items()},
        "ceiling": {"load_s": ceiling["load_s"], "peak_rss_mib": ceiling["peak_rss_mib"]},
        "pipeline": {k: v for k, v in pipeline.items() if k != "ray_data_stats"},
        "pipeline_stages": pipeline["stages"],
        "ray_data_stats": pipeline["ray_data_stats"],
        "peak_memory_mib": {
            "naive_process": round(naive["peak_rss_mib"], 1),
            "ceiling_process": round(ceiling["peak_rss_mib"], 1),
            "pipeline_driver": round(pipeline["driver_peak_rss_mib"], 1),
            "pipeline_workers": pipeline["worker_peak_rss_mib"],
        },
        "model_gflops_per_image": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "pipeline_achieved_tflops": round(pipeline_rate * flops["total"] / 1e12, 4),
    }
    if cfg.peak_tflops:
        roofline = cfg.peak_tflops * 1e12 / flops["total"]
        results["roofline_images_per_s"] = round(roofline, 2)
        results["pipeline_roofline_fraction"] = round(pipeline_rate / roofline, 4)
    return results


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = results["ceiling_images_per_s_by_batch_size"]
    batch = results["config"]["batch_size"]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(list(sweep), list(sweep.values()), "o-", label="ceiling: batched generate, no Ray")
    axes.plot([1], [results["naive_images_per_s"]], "s", label="naive: one image, one task per generate")
    axes.plot([batch], [results["pipeline_images_per_s"]], "*", markersize=14, label="pipeline (Ray Data)")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch size (requests per generate call)")
    axes.set_ylabel("images / s")
    cfg = results["config"]
    axes.set_title(f"{cfg['model']} at {cfg['image_size']} px, {cfg['images']} images, "
                   f"{', '.join(cfg['tasks'])} ({cfg['device']})")
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def table(results: dict) -> str:
    naive = results["naive_images_per_s"]
    lines = [f"{'way':<28}{'images/s':>10}{'x naive':>9}"]
    rows = [("naive (batch 1)", naive)]
    rows += [(f"ceiling, batch {bs}", rate) for bs, rate in results["ceiling_images_per_s_by_batch_size"].items()]
    rows.append((f"pipeline, batch {results['config']['batch_size']}", results["pipeline_images_per_s"]))
    rows.append(("  with actor start + load", results["pipeline_end_to_end_images_per_s"]))
    lines += [f"{name:<28}{rate:>10.3f}{rate / naive if naive else 0:>9.2f}" for name, rate in rows]
    lines.append(f"pipeline / ceiling (batch {results['ceiling_batch_size']}): {results['pipeline_vs_ceiling']}, "
                 f"pipeline / naive: {results['pipeline_vs_naive']}")
    return "\n".join(lines)


def write_results(results: dict, output: str) -> tuple[Path, Path]:
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = plot(results, path.with_suffix(".png")) if "ceiling_images_per_s_by_batch_size" in results else None
    if png:
        results["plot"] = str(png)
    path.write_text(json.dumps(results, indent=2, sort_keys=True))
    return path, png


def write_parquet_inputs(directory: Path, count: int, per_file: int = 1_000, distinct: int = 64) -> str:
    """`count` rows of small PNGs in Parquet files, each row its own URI (and so its own image id)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.devtools.shapes import draw_scene, png_bytes

    rng = np.random.default_rng(0)
    images = [png_bytes(draw_scene(rng, size_range=(48, 96)).image) for _ in range(distinct)]
    directory.mkdir(parents=True, exist_ok=True)
    for first in range(0, count, per_file):
        rows = range(first, min(first + per_file, count))
        table = pa.table({"image": [images[i % distinct] for i in rows], "uri": [f"memory-check://{i}" for i in rows]})
        pq.write_table(table, directory / f"part-{first:06d}.parquet")
    return str(directory)


def run_memory_check(cfg: BenchmarkConfig) -> dict:
    """Driver peak RSS of the pipeline for 1k and 10k images with a cheap model stage (the tiny
    model, caption only, answers of whatever length it gives): what is measured is the driver's
    bookkeeping, which must not grow with the dataset."""
    from pipelines.devtools.bench_models import save_benchmark_model

    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="paligemma-memory-"))
    try:
        model_dir = str(save_benchmark_model("tiny", 32, workdir / "model"))
        runs = {}
        for count in MEMORY_CHECK_SIZES:
            inputs = write_parquet_inputs(workdir / f"inputs-{count}", count)
            run = in_fresh_process(run_pipeline, model_dir, inputs, str(workdir / f"labels-{count}"), ["caption"],
                                    [], MEMORY_CHECK_BATCH, None, True, False, {"uri_column": "uri"})
            runs[count] = {k: run[k] for k in ("seconds", "rows", "images", "driver_peak_rss_mib",
                                               "worker_peak_rss_mib")}
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    small, large = (runs[n]["driver_peak_rss_mib"] for n in MEMORY_CHECK_SIZES)
    return {"memory_check": runs, "driver_peak_ratio_10k_vs_1k": round(large / small, 3),
            "within_20_percent": large <= 1.2 * small, "machine": {"cpus": os.cpu_count(),
                                                                   "load_average_at_end": os.getloadavg()}}


def run_budget_check(cfg: BenchmarkConfig) -> dict:
    """`budget_cost.run_budget_cost` on the committed shapes checkpoint (answers that end) and the tiny
    random model (answers that never do), at the same resolution."""
    from pipelines.devtools.bench_models import save_benchmark_model
    from pipelines.devtools.budget_cost import run_budget_cost

    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="paligemma-budget-"))
    try:
        runaway = str(save_benchmark_model("tiny", 112, workdir / "runaway"))
        report = run_budget_cost(str(SHAPES_CHECKPOINT), runaway, workdir, count=cfg.images)
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"budget_check": report, "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}}


def run_feeding_check(cfg: BenchmarkConfig) -> dict:
    """`feeding.decode_timings` and `feeding.run_feeding` (--images 0.3 MP PNGs, a quarter as many 12 MP
    JPEGs), at 224 and 448 px."""
    from pipelines.devtools.feeding import decode_timings, run_feeding

    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="paligemma-feeding-"))
    try:
        report = run_feeding(workdir, {"jpeg-12MP": max(1, cfg.images // 4), "png-0.3MP": cfg.images},
                             peak_tflops=cfg.peak_tflops or 989.0)
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"decode": decode_timings(), **report}


def run_resume_check(cfg: BenchmarkConfig) -> dict:
    """`resume_cost.run_resume_cost` at 10,000 and 1,000,000 finished rows."""
    from pipelines.devtools.resume_cost import run_resume_cost

    return run_resume_cost((10_000, 1_000_000), Path(cfg.workdir) if cfg.workdir else None)
