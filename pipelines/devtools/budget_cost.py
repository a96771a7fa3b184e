"""What a long token budget costs: `generate` runs a batch until its longest answer ends or the budget
is spent, so a budget costs nothing while answers stop by themselves, and everything when one of them
never does. Measured per batch: seconds and decoding steps, for short answers (a checkpoint that
answers and stops) and for runaway ones (random weights, which never emit the end of sequence).
Model-only: torch and transformers, no Ray."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def time_budgets(model_dir: str, images: list[np.ndarray], prompt: str, budgets: list[int], batch_size: int,
                 repeats: int = 2) -> list[dict]:
    """For each budget: the best of `repeats` timings of greedy `generate` over `images` in batches, the
    decoding steps taken per batch (the longest answer) and the mean answer length, in new tokens."""
    import torch

    from pipelines.model.load import load_model, load_processor

    processor = load_processor(model_dir)
    model = load_model(model_dir, None, torch.device("cpu"))
    eos = processor.tokenizer.eos_token_id
    results = []
    for budget in budgets:
        best, steps, lengths = float("inf"), [], []
        for _ in range(repeats):
            steps, lengths = [], []
            started = time.perf_counter()
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                inputs = processor(text=["<image>" + prompt] * len(chunk), images=chunk, do_resize=False,
                                   return_tensors="pt")
                inputs.pop("labels", None)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=budget, do_sample=False)
                new = out[:, inputs["input_ids"].shape[1]:]
                steps.append(new.shape[1])
                ended = (new == eos).int().argmax(dim=1)
                lengths += [int(e) if new[i, e] == eos else new.shape[1] for i, e in enumerate(ended.tolist())]
            best = min(best, time.perf_counter() - started)
        results.append({"budget": budget, "seconds": round(best, 3), "steps_per_batch": steps,
                        "mean_answer_tokens": round(float(np.mean(lengths)), 1)})
    return results


def shapes_pixels(count: int, size: int, seed: int = 77) -> list[np.ndarray]:
    """Held-out synthetic scenes at the model's resolution (the pipeline's own resize)."""
    from pipelines.devtools.shapes import draw_scene
    from pipelines.devtools.tiny_model import RESAMPLE
    from pipelines.stages.decode import to_model_pixels

    rng = np.random.default_rng(seed)
    return [to_model_pixels(draw_scene(rng).image, size, RESAMPLE) for _ in range(count)]


def run_budget_cost(short_model: str, runaway_model: str, workdir: Path, count: int = 16, batch_size: int = 8,
                    budgets: tuple[int, ...] = (40, 376, 2048)) -> dict:
    """The budget cost with short answers (`short_model`, e.g. the trained shapes checkpoint) and with
    runaway answers (`runaway_model`, random weights), on the same held-out scenes."""
    from pipelines.model.load import image_size_of, load_processor

    report = {}
    for name, model_dir, prompt, tried in (("short", short_model, "detect circle ; square ; triangle", budgets),
                                           ("runaway", runaway_model, "detect car", budgets[:2])):
        pixels = shapes_pixels(count, image_size_of(load_processor(model_dir)))
        report[name] = {"model": model_dir, "prompt": prompt, "images": count, "batch_size": batch_size,
                        "by_budget": time_budgets(model_dir, pixels, prompt, list(tried), batch_size)}
    return report
