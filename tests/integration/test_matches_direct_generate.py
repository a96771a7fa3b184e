"""The pipeline's answers equal the model-card loop's: processor + generate per image, no Ray.

Resize, uint8 transport, batching, padding and decoding must not change a single token. A JPEG over
twice the model's resolution is decoded at a reduced DCT scale (`Image.draft`): the loop calls the same
PIL draft then, and with --no-jpeg-draft neither does.
"""

import io

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

# The tiny random model never ends an answer, so each runs to its budget: detect and segment would take
# 376 and 1232 tokens for two classes, which is most of this test's time and no more proof than 96.
BUDGETS = {"detect": 96, "segment": 96}


def noisy_image(width: int, height: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


def model_card_answers(model_dir: str, images: dict[str, bytes], cfg: JobConfig, jpeg_draft: bool) -> dict:
    """The model card's loop: PIL opens each file (with `Image.draft` when asked, as the pipeline does
    for big JPEGs), the processor resizes it, `generate` answers one prompt at a time."""
    processor = PaliGemmaProcessor.from_pretrained(model_dir)
    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir).eval()
    size = processor.image_processor.size["height"]
    answers = {}
    for name, data in images.items():
        image = Image.open(io.BytesIO(data))
        if jpeg_draft:
            image.draft(image.mode, (2 * size, 2 * size))  # a no-op but for JPEGs over twice the size
        image = image.convert("RGB")
        for task in cfg.tasks:
            spec = get_task(task)
            for prompt in spec.build_prompts(cfg.prompt_options(), None):
                inputs = processor(text=prompt, images=image, return_tensors="pt")
                inputs.pop("labels", None)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=spec.budget(cfg.prompt_options()),
                                         do_sample=False)
                answers[(name, prompt)] = processor.decode(out[0, inputs["input_ids"].shape[1]:],
                                                           skip_special_tokens=True)
    return answers


@pytest.mark.parametrize("jpeg_draft", [True, False])
def test_pipeline_equals_the_model_card_loop(tmp_path, ray_local, tiny_model_dir, jpeg_draft):
    sizes = [(64, 48), (31, 77), (32, 32), (200, 50)]
    images = {f"img{i}.png": encode(noisy_image(w, h, i), "PNG") for i, (w, h) in enumerate(sizes)}
    # a JPEG over twice the tiny model's 32 px on both sides: decoded at 1/2 scale with the draft
    images["photo.jpg"] = encode(noisy_image(160, 144, 9), "JPEG", quality=90)
    (tmp_path / "in").mkdir()
    for name, data in images.items():
        (tmp_path / "in" / name).write_bytes(data)
    cfg = JobConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=tiny_model_dir,
                    tasks="detect,segment,caption,answer", classes="car,person", questions="what?|where is the cat?",
                    batch_size=3, jpeg_draft=jpeg_draft, max_new_tokens=BUDGETS)
    annotate(cfg)
    pipeline = {(r["source_uri"].rsplit("/", 1)[1], r["prompt"]): r["raw_output"]
                for r in read_output(str(tmp_path / "out")).to_pylist()}
    direct = model_card_answers(tiny_model_dir, images, cfg, jpeg_draft)
    assert len(direct) == 5 * 5
    assert pipeline == direct
