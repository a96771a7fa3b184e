"""Training targets are PaliGemma's formats, and the pipeline's parsers read them back exactly."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from pipelines.devtools.shapes import COLORS, SHAPES, draw_scene
from pipelines.devtools.tiny_model import build_tiny_paligemma, build_tiny_tokenizer
from pipelines.devtools.train_shapes import (
    SUMMARY_FILE,
    PatchHeads,
    TrainConfig,
    detect_target,
    loc_tokens,
    patch_targets,
    scene_examples,
    segment_target,
    target_loss,
)
from pipelines.parse.detection import parse_detections
from pipelines.parse.segmentation import mask_codes
from pipelines.tasks.registry import get_task
from schemas.job import PromptOptions
from tests.conftest import SHAPES_MODEL


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


def test_patch_targets_say_what_covers_each_patch_in_the_vision_towers_order(scenes):
    grid = 8
    for scene in scenes:
        shapes, colors = patch_targets(scene, grid, cells=1)
        assert shapes.shape == (grid * grid, 1, 1 + len(SHAPES)) and colors.shape == (grid * grid, 1, 1 + len(COLORS))
        assert np.allclose(shapes.sum(-1), 1, atol=1e-5) and np.allclose(colors.sum(-1), 1, atol=1e-5)
        for obj in scene.objects:
            # the patch holding the box centre, counted row by row as SigLIP flattens its patches
            x, y, w, h = obj.bbox
            row, col = int((y + h / 2) * grid / scene.height), int((x + w / 2) * grid / scene.width)
            patch = row * grid + col
            assert shapes[patch, 0].argmax() == 1 + SHAPES.index(obj.category)
            assert colors[patch, 0].argmax() == 1 + list(COLORS).index(obj.color)
        # every object pixel is counted once: covered patches add up to the objects' share of the image
        share = sum(obj.area for obj in scene.objects) / (scene.width * scene.height)
        assert shapes[..., 1:].sum() / (grid * grid) == pytest.approx(share, abs=0.01)


def test_patch_cells_split_each_patch_without_changing_what_it_holds(scenes):
    whole, _ = patch_targets(scenes[0], 8, cells=1)
    split, _ = patch_targets(scenes[0], 8, cells=4)
    assert split.shape == (64, 16, 1 + len(SHAPES))
    assert np.allclose(split.mean(axis=1), whole[:, 0], atol=0.05)


def test_patch_heads_learn_the_patch_targets(scenes):
    torch.manual_seed(0)
    shapes, colors = (torch.from_numpy(np.stack(t)) for t in zip(*(patch_targets(s, 4, 1) for s in scenes[:8])))
    features = torch.randn(8, 16, 24)  # random but fixed per patch: enough to memorise 8 images
    heads = PatchHeads(24, cells=1)
    optimizer = torch.optim.Adam(heads.parameters(), lr=0.05)
    first = heads.loss(features, shapes, colors).item()
    for _ in range(200):
        loss = heads.loss(features, shapes, colors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2


def test_the_committed_checkpoint_is_the_defaults_then_the_two_documented_warm_starts():
    """`jobs/train_shapes.py` with its defaults, then `--init-from` that checkpoint with `--steps 6000
    --learning-rate 0.001`, then `--init-from` that one with the same and `--images 40000 --vae-images 20000`
    (docs/quality.md) reproduces the committed checkpoint's configuration."""
    committed = json.loads((SHAPES_MODEL / SUMMARY_FILE).read_text())

    def config(**changes) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(TrainConfig(), **changes))))

    # Fields added to TrainConfig after a run was saved take their defaults (that run had no such setting).
    runs = [committed["init_from_training"]["init_from_training"]["config"],
            committed["init_from_training"]["config"], committed["config"]]
    warm = {"steps": 6000, "learning_rate": 0.001, "init_from": "tests/data/shapes-paligemma"}
    expected = [config(), config(**warm), config(**warm, images=40000, vae_images=20000)]
    for saved, want in zip(runs, expected, strict=True):
        assert {**want, **saved} == want
    assert "init_from_training" not in committed["init_from_training"]["init_from_training"]
