"""The engine comparison's parts that need no Ray: its scenes, its requests and the model-only loop."""

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.devtools.engine_bench import engine_requests, engine_table, model_only, write_natural_images
from schemas.benchmark import BenchmarkConfig
from schemas.job import PromptOptions


def test_natural_scenes_alternate_three_shapes_and_one(tmp_path):
    paths = write_natural_images(tmp_path, 4)
    assert [path.rsplit("/", 1)[1] for path in paths] == [f"scene-{i:04d}.png" for i in range(4)]
    # three shapes draw more coloured pixels than one: the scenes alternate long and short answers
    coloured = [int((np.asarray(Image.open(path).convert("L")) < 200).sum()) for path in paths]
    assert coloured[0] > coloured[1] and coloured[2] > coloured[3]


def test_every_image_gets_each_tasks_prompts_with_its_budget():
    pixels = [np.zeros((8, 8, 3), np.uint8)] * 3
    requests = engine_requests(pixels, ["detect", "caption"], PromptOptions(classes=("car",),
                                                                            max_new_tokens=(("caption", 7),)))
    assert [(r.image, r.task, r.max_new_tokens) for r in requests][-3:] == [(0, "caption", 7), (1, "caption", 7),
                                                                         (2, "caption", 7)]
    assert len(requests) == 6


def test_the_model_only_loop_answers_every_request_at_its_forced_length(tmp_path, tiny_model_dir):
    paths = write_natural_images(tmp_path / "images", 3)
    result = model_only("transformers", tiny_model_dir, paths, ["caption"], [], 2, True)
    assert result["requests"] == 3 and result["failed_requests"] == 0 and result["seconds"] > 0
    budget = engine_requests([np.zeros((8, 8, 3), np.uint8)], ["caption"], PromptOptions())[0].max_new_tokens
    assert result["answer_tokens"] <= 3 * budget  # special tokens aside, each answer ran to its budget


def test_engines_are_a_comma_separated_flag():
    cfg = BenchmarkConfig(output="x.json", engine="transformers,vllm")
    assert cfg.engine == ["transformers", "vllm"]
    with pytest.raises(ValueError):
        BenchmarkConfig(output="x.json", engine="tgi")


def test_the_table_has_a_line_per_engine_and_case():
    figures = {"model_only_images_per_s": 1.0, "pipeline_images_per_s": 0.9, "pipeline_vs_model_only": 0.9}
    text = engine_table(json.loads(json.dumps({"engines": {"vllm": {"forced": figures, "natural": figures}}})))
    assert len(text.splitlines()) == 3 and "natural" in text
