"""The model stage's engines side by side: transformers' static batches against vLLM's continuous batching.

Two cases, each on the same checkpoint and images for every engine:

- forced: the `cpu-mid` (or `--model`) random-weight architecture, every answer forced to its token
  budget (transformers: `min_new_tokens`; vLLM: `min_tokens`): `detect car` 40 tokens and `caption en` 32,
  as docs/performance.md's CPU table; the same tokens for both engines, so only the engine differs.
- natural: the committed shapes checkpoint answering `detect`, `segment` and `caption` in its own words,
  on scenes with one shape and scenes with three: answers from a few tokens (a caption) to about 70 (three
  masks), which a static batch waits out and continuous batching does not.

For each engine and case, images per second of a model-only loop (the engine's `generate` on every
request of images decoded beforehand, after a warm-up pass) and of the pipeline (Ray Data read -> decode
-> generate -> label -> write, timed from the model stage's first task, as `benchmark.py` does), each in
a fresh process. vLLM must be importable (`.vllm-venv`, docs/performance.md).
"""

from __future__ import annotations

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

SHAPES_CHECKPOINT = Path(__file__).resolve().parents[2] / "tests" / "data" / "shapes-paligemma"
NATURAL_TASKS = ["detect", "segment", "caption"]
NATURAL_CLASSES = ["circle", "square", "triangle"]
WARMUP_IMAGES = 2
FORCED_BUDGETS = {"detect": 40, "caption": 32}


def engine_requests(pixels: list[np.ndarray], tasks: list[str], options: PromptOptions):
    """Every (image, task, prompt) request, as the model stage builds them."""
    from pipelines.model.generation import GenerationRequest
    from pipelines.tasks.registry import check_tasks

    return [GenerationRequest(index, task.name, prompt, image, task.budget(options))
            for task in check_tasks(tasks, options) for index, image in enumerate(pixels)
            for prompt in task.build_prompts(options, None)]


def model_only(engine: str, model_dir: str, paths: list[str], tasks: list[str], classes: list[str],
               batch_size: int, fixed_length: bool, device: str = "cpu", budgets: dict[str, int] | None = None) -> dict:
    """One engine's `generate` over every request of the images, decoded beforehand (no Ray): the
    engine's ceiling. Timed after a warm-up pass on the first images."""
    import torch

    from pipelines.model.load import image_size_of, load_processor
    from pipelines.stages.decode import decode_image
    from pipelines.stages.generate import StageOptions, load_engine
    from schemas.job import VllmSettings

    options = PromptOptions(classes=tuple(classes), max_new_tokens=tuple(sorted((budgets or {}).items())))
    processor = load_processor(model_dir)
    size, resample = image_size_of(processor), int(processor.image_processor.resample)
    pixels = [decode_image(Path(path).read_bytes(), size, resample)[0] for path in paths]
    requests = engine_requests(pixels, tasks, options)
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    loaded = load_engine(engine, model_dir, None, torch.device(device), "auto", batch_size,
                         StageOptions(fixed_length=fixed_length), max(r.max_new_tokens for r in requests),
                         VllmSettings())
    load_s = time.perf_counter() - started
    loaded.generate([r for r in requests if r.image < WARMUP_IMAGES])
    started = time.perf_counter()
    answers = loaded.generate(requests)
    seconds = time.perf_counter() - started
    failed = sum(isinstance(answer, BaseException) for answer in answers)
    tokens = sum(len(answer.token_logprobs) for answer in answers if not isinstance(answer, BaseException))
    return {"load_s": round(load_s, 2), "seconds": round(seconds, 3), "requests": len(requests),
            "failed_requests": failed, "answer_tokens": tokens, "peak_rss_mib": round(peak_rss_mib(), 1)}


def write_natural_images(directory: Path, count: int, seed: int = 4242) -> list[str]:
    """Shapes scenes of 160-256 px, half with one shape and half with three (answers short and long)."""
    from pipelines.devtools.shapes import draw_scene

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        wanted = 1 if index % 2 else 3
        attempt = 0
        while True:  # redraw until the scene has the number of shapes wanted (scenes hold 1-3)
            scene = draw_scene(np.random.default_rng([seed, index, attempt]))
            if len(scene.objects) == wanted:
                break
            attempt += 1
        path = directory / f"scene-{index:04d}.png"
        scene.image.save(path)
        paths.append(str(path))
    return paths


def run_case(engines: list[str], model_dir: str, image_dir: Path, paths: list[str], tasks: list[str],
             classes: list[str], batch_size: int, fixed_length: bool, workdir: Path,
             budgets: dict[str, int] | None = None) -> dict:
    """Both measurements for each engine on one case; per engine its figures, then the ratios to the first."""
    from pipelines.devtools.benchmark import _rate
    budgets = {task: n for task, n in (budgets or {}).items() if task in tasks}
    results = {}
    for engine in engines:
        loop = in_fresh_process(model_only, engine, model_dir, paths, tasks, classes, batch_size, fixed_length,
                                "cpu", budgets)
        pipeline = in_fresh_process(run_pipeline, model_dir, str(image_dir), str(workdir / f"labels-{engine}"),
                                    tasks, classes, batch_size, None, True, fixed_length,
                                    {"engine": engine, "max_new_tokens": budgets})
        results[engine] = {
            "model_only_images_per_s": _rate(len(paths), loop["seconds"]),
            "pipeline_images_per_s": _rate(len(paths), pipeline["steady_seconds"]),
            "pipeline_end_to_end_images_per_s": _rate(len(paths), pipeline["seconds"]),
            "pipeline_vs_model_only": round(loop["seconds"] / pipeline["steady_seconds"], 3),
            "model_only": loop,
            "pipeline": {key: pipeline[key] for key in ("seconds", "steady_seconds", "rows", "images",
                                                        "driver_peak_rss_mib", "worker_peak_rss_mib")},
        }
    first = engines[0]
    for engine in engines[1:]:
        for measure in ("model_only_images_per_s", "pipeline_images_per_s"):
            base = results[first][measure]
            results[engine][f"{measure.removesuffix('_images_per_s')}_vs_{first}"] = (
                round(results[engine][measure] / base, 3) if base else None)
    return results


def run_engine_benchmark(cfg: BenchmarkConfig) -> dict:
    """The forced and natural cases for every engine of `cfg.engine`; results under `engines`."""
    from pipelines.devtools.bench_models import save_benchmark_model
    from pipelines.devtools.benchmark import write_images

    workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="paligemma-engines-"))
    try:
        model_dir = str(save_benchmark_model(cfg.model, cfg.image_size, workdir / "model", cfg.device))
        forced_paths = write_images(workdir / "forced", cfg.images)
        forced = run_case(cfg.engine, model_dir, workdir / "forced", forced_paths, cfg.tasks, cfg.classes,
                          cfg.batch_size, True, workdir / "forced-out", FORCED_BUDGETS)
        natural_paths = write_natural_images(workdir / "natural", cfg.images)
        natural = run_case(cfg.engine, str(SHAPES_CHECKPOINT), workdir / "natural", natural_paths, NATURAL_TASKS,
                           NATURAL_CLASSES, cfg.batch_size, False, workdir / "natural-out")
    finally:
        if not cfg.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "config": cfg.model_dump(),
        "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "cases": {"forced": {"model": cfg.model, "image_size": cfg.image_size, "tasks": cfg.tasks,
                             "lengths": f"every answer forced to its budget: {FORCED_BUDGETS}"},
                  "natural": {"model": str(SHAPES_CHECKPOINT.relative_to(SHAPES_CHECKPOINT.parents[2])),
                              "tasks": NATURAL_TASKS, "lengths": "the checkpoint's own answers; scenes of 1 and 3 "
                              "shapes"}},
        "engines": {engine: {"forced": forced[engine], "natural": natural[engine]} for engine in cfg.engine},
    }


def engine_table(results: dict) -> str:
    lines = [f"{'engine':<14}{'case':<9}{'model-only img/s':>18}{'pipeline img/s':>16}{'pipeline/model-only':>21}"]
    for engine, cases in results["engines"].items():
        for case, figures in cases.items():
            lines.append(f"{engine:<14}{case:<9}{figures['model_only_images_per_s']:>18.3f}"
                         f"{figures['pipeline_images_per_s']:>16.3f}{figures['pipeline_vs_model_only']:>21.3f}")
    return "\n".join(lines)
