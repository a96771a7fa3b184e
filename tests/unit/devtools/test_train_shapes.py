"""Training targets are PaliGemma's formats, and the pipeline's parsers read them back exactly."""


import numpy as np
import pytest
import torch

from pipelines.devtools.shapes import SHAPES, draw_scene
from pipelines.devtools.tiny_model import build_tiny_paligemma, build_tiny_tokenizer
from pipelines.devtools.train_shapes import (
    detect_target,
    loc_tokens,
    scene_examples,
    segment_target,
    target_loss,
)
from pipelines.parse.detection import parse_detections
from pipelines.parse.segmentation import mask_codes
from pipelines.tasks.registry import get_task
from schemas.job import PromptOptions


@pytest.fixture(scope="module")
def scenes():
    return [draw_scene(np.random.default_rng([11, i])) for i in range(30)]


def codes_for(scene):
    return [np.arange(16) + 7 * k for k in range(len(scene.objects))]


def test_loc_tokens_are_y_first_in_1024_bins():
    # x 50..150 of 200 px, y 10..30 of 40 px
    assert loc_tokens((50, 10, 100, 20), 200, 40) == "<loc0256><loc0256><loc0768><loc0768>"
    # the far edge is bin 1024, past the last token: it is clipped to <loc1023>
    assert loc_tokens((0, 0, 200, 40), 200, 40) == "<loc0000><loc0000><loc1023><loc1023>"


def test_detect_targets_parse_back_to_the_ground_truth_boxes(scenes):
    for scene in scenes:
        boxes, problems = parse_detections(detect_target(list(scene.objects), scene.width, scene.height),
                                           SHAPES, (scene.width, scene.height))
        assert problems == [] and [b.label for b in boxes] == [o.category for o in scene.objects]
        for box, obj in zip(boxes, scene.objects):
            x, y, w, h = obj.bbox
            truth = (x, y, x + w, y + h)
            got = (box.x_min, box.y_min, box.x_max, box.y_max)
            # one bin is 1/1024 of a side: at most half a bin of rounding, plus the clipped last bin
            assert np.allclose(got, truth, atol=max(scene.width, scene.height) / 1024 + 1e-9)


def test_segment_targets_carry_each_objects_codewords_in_order(scenes):
    scene = next(s for s in scenes if len(s.objects) == 3)
    codes = codes_for(scene)
    text = segment_target(list(scene.objects), codes, scene.width, scene.height)
    assert mask_codes(text) == [tuple(int(v) for v in c) for c in codes]
    assert text.count(" ; ") == 2 and text.endswith(" " + scene.objects[-1].category)


def test_examples_use_the_registry_prompts_and_keep_only_requested_classes(scenes):
    rng = np.random.default_rng(0)
    examples = [e for i, s in enumerate(scenes) for e in scene_examples(i, s, codes_for(s), rng, 0.5)]
    assert [e.task for e in examples[:3]] == ["caption", "detect", "segment"] and len(examples) == 3 * len(scenes)
    subsets = 0
    for e in examples:
        scene = scenes[e.image]
        if e.task == "caption":
            assert e.prefix == get_task("caption").build_prompts(PromptOptions(), None)[0]
            assert e.suffix == scene.caption
            continue
        classes = tuple(e.prefix.split(" ", 1)[1].split(" ; "))
        assert e.prefix == get_task(e.task).build_prompts(PromptOptions(classes=classes), None)[0]
        subsets += classes != SHAPES
        top_to_bottom = sorted(scene.objects, key=lambda o: (o.bbox[1], o.bbox[0]))
        wanted = [o.category for o in top_to_bottom if o.category in classes]
        boxes, _ = parse_detections(e.suffix, classes, (scene.width, scene.height))
        assert [b.label for b in boxes] == wanted
    assert 0 < subsets < len(examples) * 2 / 3


def test_the_learnt_tokenizer_has_word_tokens_and_still_spells_anything():
    tokenizer = build_tiny_tokenizer(["a red circle and a blue square", "detect circle ; square"] * 3)
    assert tokenizer.tokenize("a red circle") == ["a", "\u2581red", "\u2581circle"]
    for text in ["a red circle", "zebra crossing, 12 km/h", "caf\u00e9 \u00fcber \u6f22\u5b57"]:
        assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text




def test_target_loss_without_soft_targets_is_the_models_own_loss():
    model, processor = build_tiny_paligemma(image_size=28, patch_size=14, seed=1)
    image = np.zeros((28, 28, 3), np.uint8)
    batch = processor(text=["<image>detect circle", "<image>caption en"], images=[image, image],
                      suffix=["<loc0010><loc0020><loc0500><loc0600> circle", "a red circle"],
                      padding="longest", do_resize=False, return_tensors="pt")
    loc_ids = (processor.tokenizer.convert_tokens_to_ids("<loc0000>"),
               processor.tokenizer.convert_tokens_to_ids("<loc1023>"))
    with torch.no_grad():
        expected = model(**batch).loss
        plain = target_loss(model, batch, loc_ids, sigma=0)
        soft = target_loss(model, batch, loc_ids, sigma=3)
    assert plain == pytest.approx(expected.item(), rel=1e-5)
    assert soft != pytest.approx(plain.item())  # the loc tokens are scored differently
