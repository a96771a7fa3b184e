"""What it takes to feed a GPU: the CPU cost of everything but the model.

Two measurements, both in CPU time, so that other work on the machine does not skew them:
- `decode_timings`: decode + resize of one image, full decode against the JPEG draft fast path, at a
  camera photo's 12 MP, 3 MP and 0.3 MP, with the pixel differences between the two;
- `run_feeding`: the pipeline's non-model stages (read, decode, label, write through Ray, with
  `StageOptions.benchmark_without_model`) against a plain single-process loop doing the same decode
  and resize, in images per CPU-second, on 12 MP JPEGs and 0.3 MP PNGs; and from it, the CPU cores one
  GPU needs at its prefill roofline (`bench_models.prefill_roofline`).
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SIZES = {"12MP": (4000, 3000), "3MP": (2000, 1500), "0.3MP": (640, 480)}
RESAMPLE = 3  # bicubic, as the released processors


def photo_like(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A camera-photo stand-in: a shapes scene stretched to the size, with per-pixel sensor noise (which
    is what makes JPEG decoding cost what it does on photos), saved at quality 90."""
    from pipelines.devtools.shapes import draw_scene

    rng = np.random.default_rng(seed)
    side = min(width, height, 640)
    scene = draw_scene(rng, size_range=(side, side), noise=12).image.resize((width, height), Image.BILINEAR)
    pixels = np.asarray(scene).astype(np.int16) + rng.integers(-10, 11, (height, width, 3))
    buffer = io.BytesIO()
    options = {"quality": 90} if fmt == "JPEG" else {}
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _cpu_ms(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best * 1000


def decode_timings(model_sizes: tuple[int, ...] = (224, 448), repeats: int = 5) -> list[dict]:
    """Per photo size and model resolution: CPU milliseconds of decode + resize, full and with the JPEG
    draft, and how far apart their pixels are (levels of 255)."""
    from pipelines.stages.decode import decode_image

    rows = []
    for name, (width, height) in PHOTO_SIZES.items():
        data = photo_like(width, height)
        for size in model_sizes:
            full = decode_image(data, size, RESAMPLE, jpeg_draft=False)[0].astype(np.int16)
            fast = decode_image(data, size, RESAMPLE, jpeg_draft=True)[0].astype(np.int16)
            diff = np.abs(full - fast)
            full_ms = _cpu_ms(lambda: decode_image(data, size, RESAMPLE, jpeg_draft=False), repeats)
            fast_ms = _cpu_ms(lambda: decode_image(data, size, RESAMPLE, jpeg_draft=True), repeats)
            rows.append({"photo": name, "width": width, "height": height, "model_px": size,
                         "full_ms": round(full_ms, 1), "draft_ms": round(fast_ms, 1),
                         "speedup": round(full_ms / fast_ms, 2), "pixel_diff_mean": round(float(diff.mean()), 3),
                         "pixel_diff_p99": float(np.percentile(diff, 99)), "pixel_diff_max": int(diff.max())})
    return rows


def plain_loop(paths: list[str], size: int) -> dict:
    """A single process reading each file and decoding + resizing it as the pipeline does: the floor
    any pipeline is compared with."""
    from pipelines.stages.decode import decode_image

    started = time.process_time()
    for path in paths:
        decode_image(Path(path).read_bytes(), size, RESAMPLE)
    cpu_s = time.process_time() - started
    return {"images": len(paths), "cpu_seconds": round(cpu_s, 3), "images_per_cpu_s": round(len(paths) / cpu_s, 3)}


def write_inputs(directory: Path, kind: str, count: int) -> list[str]:
    """`count` distinct files of one kind: 12 MP JPEGs or 0.3 MP PNGs."""
    directory.mkdir(parents=True, exist_ok=True)
    width, height = PHOTO_SIZES["12MP" if kind == "jpeg-12MP" else "0.3MP"]
    fmt, suffix = ("JPEG", "jpg") if kind == "jpeg-12MP" else ("PNG", "png")
    paths = []
    for index in range(count):
        path = directory / f"{kind}-{index:04d}.{suffix}"
        path.write_bytes(photo_like(width, height, seed=index, fmt=fmt))
        paths.append(str(path))
    return paths


def run_feeding(workdir: Path, counts: dict[str, int], model_sizes: tuple[int, ...] = (224, 448),
                peak_tflops: float = 989.0, growth: int = 4) -> dict:
    """The pipeline without its model against the plain loop, per input kind and resolution, and the
    cores a GPU at its roofline needs fed from each.

    A run has a fixed CPU cost (Ray Data planning, starting workers and actors) that a long job pays
    once, so the pipeline runs over `count` and `growth` x `count` images, and the per-image cost is
    the difference between the two divided by the images added: the steady-state rate. The CPU counted
    is Ray Data's own count of its tasks' CPU time (read, decode, the model-less model stage, label,
    write); Ray's scheduler processes and the driver are reported beside it (`tree_cpu_seconds`)."""
    from pipelines.devtools.bench_models import prefill_roofline, save_benchmark_model
    from pipelines.devtools.measure import in_fresh_process
    from pipelines.devtools.timed_pipeline import run_pipeline

    results = []
    for size in model_sizes:
        model_dir = str(save_benchmark_model("tiny", size, workdir / f"model-{size}"))  # its processor sets the size
        roofline = prefill_roofline("paligemma2-3b", size, peak_tflops)
        for kind, count in counts.items():
            runs = []
            for images in (count, growth * count):
                folder = workdir / f"{kind}-{images}"
                # the same files again when a run repeats (a later resolution, or a rerun in the same workdir)
                paths = sorted(map(str, folder.iterdir())) if folder.exists() else write_inputs(folder, kind, images)
                runs.append(in_fresh_process(run_pipeline, model_dir, str(folder), str(workdir / f"out-{kind}"),
                                              ["detect", "caption"], ["car"], 16, None, True, False, None, None,
                                              True))
            plain = in_fresh_process(plain_loop, paths, size)
            small, large = runs
            added_cpu_s = large["task_cpu_seconds"] - small["task_cpu_seconds"]
            if added_cpu_s <= 0:  # the added images cost less than the run-to-run noise of the fixed cost
                raise ValueError(f"{kind} at {size} px: {large['images']} images took no more task CPU than "
                                 f"{small['images']} ({added_cpu_s:+.3f} s); run with more images")
            rate = (large["images"] - small["images"]) / added_cpu_s
            results.append({
                "input": kind, "model_px": size, "images": [small["images"], large["images"]],
                "pipeline_task_cpu_seconds": [small["task_cpu_seconds"], large["task_cpu_seconds"]],
                "tree_cpu_seconds": [small["cpu_seconds"], large["cpu_seconds"]],
                "pipeline_wall_s": [round(small["seconds"], 3), round(large["seconds"], 3)],
                "pipeline_images_per_cpu_s": round(rate, 3),
                "plain_images_per_cpu_s": plain["images_per_cpu_s"],
                "pipeline_vs_plain": round(rate / plain["images_per_cpu_s"], 3),
                "roofline_images_per_s": round(roofline, 1),
                "cores_per_gpu": round(roofline / rate, 1),
            })
    return {"feeding": results, "peak_tflops": peak_tflops,
            "machine": {"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}}
