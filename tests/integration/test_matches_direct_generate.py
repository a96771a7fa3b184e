"""The pipeline's answers equal the model-card loop's: processor + generate per image, no Ray.

Resize, uint8 transport, batching, padding and decoding must not change a single token.
"""

import pytest
import torch
from PIL import Image
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from pipelines.run import annotate
from pipelines.tasks.registry import get_task
from schemas.job import JobConfig
from tests.images import encode
from tests.integration.conftest import read_output

pytestmark = pytest.mark.integration


def noisy_image(width: int, height: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


def test_pipeline_equals_the_model_card_loop(tmp_path, ray_local, tiny_model_dir):
    images = {f"img{i}.png": noisy_image(w, h, i) for i, (w, h) in enumerate([(64, 48), (31, 77), (32, 32), (200, 50)])}
    (tmp_path / "in").mkdir()
    for name, image in images.items():
        (tmp_path / "in" / name).write_bytes(encode(image, "PNG"))
    cfg = JobConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tiny_model_dir,
                    tasks="detect,segment,caption,answer", classes="car,person", questions="what?|where is the cat?",
                    batch_size=3)
    annotate(cfg)
    pipeline = {(r["source_uri"].rsplit("/", 1)[1], r["prompt"]): r["raw_output"]
                for r in read_output(str(tmp_path / "out")).to_pylist()}

    processor = PaliGemmaProcessor.from_pretrained(tiny_model_dir)
    model = PaliGemmaForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    direct = {}
    for name, image in images.items():
        for task in cfg.tasks:
            spec = get_task(task)
            for prompt in spec.build_prompts(cfg.prompt_options(), None):
                inputs = processor(text=prompt, images=image, return_tensors="pt")
                inputs.pop("labels", None)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=spec.max_new_tokens(cfg.prompt_options()),
                                         do_sample=False)
                direct[(name, prompt)] = processor.decode(out[0, inputs["input_ids"].shape[1]:],
                                                          skip_special_tokens=True)
    assert len(direct) == 4 * 5
    assert pipeline == direct
