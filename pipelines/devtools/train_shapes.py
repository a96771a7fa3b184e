"""Train a small PaliGemma on synthetic shapes, to get offline a checkpoint whose answers are right.

Real PaliGemma weights cannot be downloaded everywhere, and a random model's answers are noise, so
nothing would show that a box comes back where the object is after resize, batching, parsing and
coordinate mapping. This module trains, from scratch on CPU, a 1.35M-parameter PaliGemma for
`detect`, `segment` and `caption` on `pipelines.devtools.shapes` scenes, in PaliGemma's own output format:

    detect circle ; square ; triangle   ->  <loc0102><loc0213><loc0488><loc0611> circle ; <loc...> square
    segment circle ; square ; triangle  ->  <loc...>x4<seg...>x16 circle ; ...
    caption en                          ->  a red circle and a blue square

Locations are y_min, x_min, y_max, x_max in 1024 bins (the pipeline reads bin / 1024 of the
image size). Objects are listed top to bottom (by y_min, then x_min): the first token is then the
smallest y_min in the image, which a small model finds sooner than "the y_min of the leftmost
object" (captions keep their left-to-right order). A quarter of the detect and segment prompts
name a random subset of the classes in random order, and the target keeps only those classes, so
the model reads the prompt instead of always answering all three. Masks are the codewords of a small
VQ-VAE trained first (`pipelines/mask_vae.py`). While it trains, a linear read-out on every vision token
learns which shape and colour cover that patch (`PatchHeads`, not saved): without it the model found the
objects but named them little better than chance. Images reach the model through the pipeline's own
resize (`to_model_pixels`), and prompts come from the task registry, so training sees exactly
what the pipeline sends.

The committed checkpoint `tests/data/shapes-paligemma/` is this module's output with the defaults; its
measured quality is in docs/quality.md ("The small shapes checkpoint").
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

from pipelines.devtools.mask_vae import MaskVae, mask_in_box, reconstruction_iou, save_vae, train_mask_vae
from pipelines.devtools.shapes import COLORS, SHAPES, SIZE_RANGE, Scene, ShapeObject, draw_scene
from pipelines.devtools.tiny_model import RESAMPLE, build_tiny_paligemma, save_model_hub_layout
from pipelines.model.checkpoint import VAE_FILENAME
from pipelines.model.mask_decoder import read_npz
from pipelines.parse.geometry import LOC_BINS, box_xyxy_px_to_loc_yxyx_1024
from pipelines.stages.decode import to_model_pixels
from pipelines.tasks.registry import get_task
from schemas.job import PromptOptions

TASKS = ("detect", "segment", "caption")
SUMMARY_FILE = "training.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the checkpoint; saved beside it in `training.json`."""

    images: int = 20000  # training scenes, image i drawn from default_rng([seed, i])
    seed: int = 0
    steps: int = 14000
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    subset_fraction: float = 0.25  # share of detect/segment prompts naming a subset of the classes
    loc_sigma: float = 3.0  # width in bins of the soft target mixed into each <loc> token's loss; 0: plain
    patch_loss_weight: float = 1.0  # weight of the per-patch shape and colour loss on the vision tower; 0: off
    patch_cells: int = 1  # each patch predicts what covers each of its patch_cells x patch_cells cells
    image_size: int = 112
    patch_size: int = 14
    hidden_size: int = 128
    num_layers: int = 3
    text_layers: int = 0  # depth of the text model when it differs from the vision tower's; 0: num_layers
    vae_steps: int = 300
    vae_images: int = 0  # the mask VAE learns from the first vae_images scenes' masks; 0: all of them
    vae_embedding_dim: int = 32
    threads: int = 2
    tie_word_embeddings: bool = True  # the output head is the input embedding, as in real PaliGemma (and vLLM needs)
    size_range: tuple[int, int] = SIZE_RANGE
    init_from: str | None = None  # a checkpoint this recipe wrote: train on from its weights and mask VAE


@dataclass(frozen=True)
class Example:
    """One training sequence: the image (an index into the pixel array), prompt and target."""

    image: int
    task: str
    prefix: str
    suffix: str


def loc_tokens(bbox: tuple[int, int, int, int], width: int, height: int) -> str:
    """COCO [x, y, w, h] in pixels -> `<locY0><locX0><locY1><locX1>`, the inverse of the parser's bin / 1024."""
    x, y, w, h = bbox
    bins = box_xyxy_px_to_loc_yxyx_1024((x, y, x + w, y + h), (width, height))
    return "".join(f"<loc{b:04d}>" for b in bins)


def seg_tokens(codes: np.ndarray) -> str:
    return "".join(f"<seg{int(code):03d}>" for code in codes)


def detect_target(objects: list[ShapeObject], width: int, height: int) -> str:
    return " ; ".join(f"{loc_tokens(obj.bbox, width, height)} {obj.category}" for obj in objects)


def segment_target(objects: list[ShapeObject], codes: list[np.ndarray], width: int, height: int) -> str:
    return " ; ".join(f"{loc_tokens(obj.bbox, width, height)}{seg_tokens(c)} {obj.category}"
                      for obj, c in zip(objects, codes, strict=True))


def _prompt(task: str, classes: tuple[str, ...]) -> str:
    return get_task(task).build_prompts(PromptOptions(classes=classes), None)[0]


def scene_examples(index: int, scene: Scene, codes: list[np.ndarray], rng: np.random.Generator,
                   subset_fraction: float) -> list[Example]:
    """The detect, segment and caption examples of one scene (detect and segment objects top to bottom)."""
    examples = [Example(index, "caption", _prompt("caption", ()), scene.caption)]
    for task in ("detect", "segment"):
        classes = SHAPES
        if rng.random() < subset_fraction:
            k = int(rng.integers(1, len(SHAPES) + 1))
            classes = tuple(str(c) for c in rng.permutation(SHAPES)[:k])
        kept = sorted((i for i, obj in enumerate(scene.objects) if obj.category in classes),
                      key=lambda i: (scene.objects[i].bbox[1], scene.objects[i].bbox[0]))
        objects = [scene.objects[i] for i in kept]
        if task == "detect":
            target = detect_target(objects, scene.width, scene.height)
        else:
            target = segment_target(objects, [codes[i] for i in kept], scene.width, scene.height)
        examples.append(Example(index, task, _prompt(task, classes), target))
    return examples


def init_loc_embeddings(model: PaliGemmaForConditionalGeneration, processor: PaliGemmaProcessor) -> None:
    """Give the 1024 `<loc>` tokens a sinusoidal code of their bin, in the output head and in the input
    embedding (one matrix when they are tied), so neighbouring bins start close.

    In the head, a near miss then costs little from the first step (tied model, 700 detect-only steps:
    median loc error 56 instead of 66 bins). In the input, the tokens already written tell the model
    where the object is before it has seen each of the 1024 bins often: the label and the next
    coordinate depend on it (700 detect-only steps: mAP@.5 0.197 instead of 0.179, objects found at
    IoU >= 0.5 77% instead of 60%).
    """
    ids = torch.as_tensor(processor.tokenizer.convert_tokens_to_ids([f"<loc{i:04d}>" for i in range(LOC_BINS)]))
    head, embedding = model.lm_head.weight, model.get_input_embeddings().weight
    half = head.shape[1] // 2
    periods = torch.logspace(math.log10(8), math.log10(4 * LOC_BINS), half)
    angles = torch.arange(LOC_BINS, dtype=torch.float32)[:, None] * (2 * math.pi / periods)[None]
    code = torch.cat([angles.sin(), angles.cos()], dim=1)
    with torch.no_grad():
        if head.data_ptr() != embedding.data_ptr():
            head[ids] = code * head.std().item()
        embedding[ids] = code * (embedding.std() / code.std()).item()  # the other embeddings' scale


def _learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def target_loss(model: PaliGemmaForConditionalGeneration, batch: dict, loc_ids: tuple[int, int],
                sigma: float) -> torch.Tensor:
    """Next-token cross-entropy on the target tokens. For a `<loc>` token it is half the usual loss
    and half the loss against a Gaussian of width `sigma` bins around the true bin: a guess a few
    bins off then earns partial credit, which speeds up learning coordinates (measured on a tied-
    embedding model: median loc error 56 instead of 64 bins after 700 detect-only steps)."""
    labels = batch["labels"][:, 1:]
    logits = model(**{name: value for name, value in batch.items() if name != "labels"}).logits[:, :-1]
    labelled = labels != -100
    logits, labels = logits[labelled].float(), labels[labelled]
    losses = F.cross_entropy(logits, labels, reduction="none")
    first, last = loc_ids
    is_loc = (labels >= first) & (labels <= last)
    if sigma > 0 and is_loc.any():
        bins = torch.arange(last - first + 1, dtype=torch.float32)
        soft = torch.exp(-((bins[None] - (labels[is_loc] - first)[:, None]) ** 2) / (2 * sigma**2))
        soft = soft / soft.sum(dim=1, keepdim=True)
        soft_loss = -(soft * F.log_softmax(logits[is_loc], dim=-1)[:, first:last + 1]).sum(dim=1)
        losses = losses.clone()
        losses[is_loc] = 0.5 * losses[is_loc] + 0.5 * soft_loss
    return losses.mean()


def patch_targets(scene: Scene, grid: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """What covers each cell of the vision tower's grid x grid patches, each patch cut into cells x cells,
    as fractions of the cell's area: (grid * grid, cells * cells, 1 + len(SHAPES)) for background and
    each shape, and (grid * grid, cells * cells, 1 + len(COLORS)) for background and each colour. The
    image is stretched to the square model frame, as the pipeline does."""
    side = grid * cells
    shapes, colors = np.zeros((side, side, 1 + len(SHAPES)), np.float32), np.zeros((side, side, 1 + len(COLORS)),
                                                                                 np.float32)
    for obj in scene.objects:
        mask = Image.fromarray(obj.rle.to_binary().astype(np.uint8) * 255)
        cover = np.asarray(mask.resize((side, side), Image.Resampling.BOX), np.float32) / 255
        shapes[..., 1 + SHAPES.index(obj.category)] += cover
        colors[..., 1 + list(COLORS).index(obj.color)] += cover
    shapes[..., 0], colors[..., 0] = 1 - shapes[..., 1:].sum(-1), 1 - colors[..., 1:].sum(-1)

    def by_patch(cover: np.ndarray) -> np.ndarray:  # (side, side, k) -> (patch, cell, k), patches row-major
        k = cover.shape[-1]
        return cover.reshape(grid, cells, grid, cells, k).transpose(0, 2, 1, 3, 4).reshape(grid * grid, -1, k)

    return by_patch(shapes.clip(0, 1)), by_patch(colors.clip(0, 1))


class PatchHeads(torch.nn.Module):
    """Linear read-outs of shape and colour from each vision token, for each cell of its patch, used only
    while training: they make every patch of an object say what the object is (and, with cells, where
    its edge runs inside the patch), so the text model, writing the label after a box, needs only to look
    somewhere inside the box. They are not saved with the checkpoint."""

    def __init__(self, width: int, cells: int):
        super().__init__()
        self.shape = torch.nn.Linear(width, cells * cells * (1 + len(SHAPES)))
        self.color = torch.nn.Linear(width, cells * cells * (1 + len(COLORS)))

    def loss(self, features: torch.Tensor, shapes: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
        """Cross-entropy against the soft per-cell targets of `patch_targets`."""
        total = features.new_zeros(())
        for head, target in ((self.shape, shapes), (self.color, colors)):
            logits = head(features).view(*target.shape)
            total = total - (target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
        return total


def _batch(processor: PaliGemmaProcessor, pixels: np.ndarray, examples: list[Example]) -> dict:
    """Model inputs with labels: the processor masks the prompt (-100), so only the target is learnt."""
    return processor(
        text=["<image>" + e.prefix for e in examples],
        images=[pixels[e.image] for e in examples],
        suffix=[e.suffix for e in examples],
        padding="longest",
        do_resize=False,
        return_tensors="pt",
    )


def draw_training_scenes(cfg: TrainConfig) -> tuple[list[Scene], np.ndarray]:
    """The scenes (labels only) and their pixels as the model sees them."""
    scenes, pixels = [], np.zeros((cfg.images, cfg.image_size, cfg.image_size, 3), np.uint8)
    for i in range(cfg.images):
        scene = draw_scene(np.random.default_rng([cfg.seed, i]), cfg.size_range)
        pixels[i] = to_model_pixels(scene.image, cfg.image_size, RESAMPLE)  # the processor's, as the pipeline
        scenes.append(dataclasses.replace(scene, image=None))
    return scenes, pixels


def _check_same_vae(vae: MaskVae, saved: Path) -> None:
    """A warm start trains on the codewords of the checkpoint's own VAE. Only its decoder is saved, so
    the encoder is retrained from the same seed and scenes; refuse if that did not give the same VAE."""
    ours, theirs = vae.decoder.state_dict_to_npz(), read_npz(str(saved))
    if ours.keys() != theirs.keys() or any(not np.allclose(ours[k], theirs[k], atol=1e-5) for k in ours):
        raise ValueError(f"the mask VAE retrained here differs from {saved}; warm-start with the --seed, "
                         "--images and --vae-steps the checkpoint was trained with")


def train_shapes(output: str | Path, cfg: TrainConfig = TrainConfig(), log_every: int = 50) -> dict:
    """Train the mask VQ-VAE, then PaliGemma, and save both to `output` with `training.json`."""
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    output = Path(output)

    scenes, pixels = draw_training_scenes(cfg)
    objects = [(s, o) for s, scene in enumerate(scenes) for o in scene.objects]
    masks = np.stack([mask_in_box(o.rle.to_binary(), o.bbox) for _, o in objects])
    print(f"drew {len(scenes)} scenes with {len(objects)} objects in {time.perf_counter() - started:.0f} s",
          flush=True)

    # A warm start may add scenes but must learn the codewords of the VAE it started with: the VAE
    # can be held to the scenes it was trained on while the model sees more.
    vae_masks = masks[:sum(s < cfg.vae_images for s, _ in objects)] if cfg.vae_images else masks
    vae, vae_log = train_mask_vae(vae_masks, cfg.vae_steps, embedding_dim=cfg.vae_embedding_dim, seed=cfg.seed)
    if cfg.init_from:
        _check_same_vae(vae, Path(cfg.init_from) / VAE_FILENAME)
    vae_log["reconstruction_iou_64px"] = round(reconstruction_iou(vae, vae_masks[:2000]), 4)
    print(f"mask vae: {vae_log}", flush=True)
    all_codes = vae.encode(masks)
    codes_per_scene: list[list[np.ndarray]] = [[] for _ in scenes]
    for (s, _), c in zip(objects, all_codes, strict=True):
        codes_per_scene[s].append(c)

    examples = [e for i, scene in enumerate(scenes)
                for e in scene_examples(i, scene, codes_per_scene[i], rng, cfg.subset_fraction)]
    corpus = [text for e in examples if e.task == "caption" for text in (e.prefix, e.suffix)]
    corpus += [_prompt(task, (c,)) for task in ("detect", "segment") for c in SHAPES] * 2
    # Tied input and output embeddings, as in real PaliGemma: vLLM's Gemma 2 computes logits with the
    # input embedding and refuses a separate head. (An early recipe, without the per-patch loss, found
    # a tied three-layer model writing boxes like <loc0105><loc0105><loc0414><loc0414>, x copied from y.)
    if cfg.init_from:
        model = PaliGemmaForConditionalGeneration.from_pretrained(cfg.init_from, dtype=torch.float32)
        processor = PaliGemmaProcessor.from_pretrained(cfg.init_from)
    else:
        model, processor = build_tiny_paligemma(
            image_size=cfg.image_size, patch_size=cfg.patch_size, seed=cfg.seed, hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers, corpus=corpus, tie_word_embeddings=cfg.tie_word_embeddings,
            text_overrides={"num_hidden_layers": cfg.text_layers or cfg.num_layers})
        init_loc_embeddings(model, processor)
    loc_ids = (processor.tokenizer.convert_tokens_to_ids("<loc0000>"), processor.tokenizer.convert_tokens_to_ids(
        f"<loc{LOC_BINS - 1:04d}>"))
    # Saved as built (left padding, Gemma's side for batched generation), before training pads right:
    # the tokenizer stores the padding of its last call in tokenizer.json.
    processor.save_pretrained(output)
    # Right padding while training, so a prompt's positions are those it has at inference, where a
    # batch of one task shares one prompt and needs no padding.
    processor.tokenizer.padding_side = "right"
    parameters = sum(p.numel() for p in model.parameters())
    print(f"paligemma: {parameters:,} parameters, {len(examples)} examples", flush=True)

    # One task per step, in turn: a batch pads to its longest target, and segment targets are
    # three times as long as the others, so mixing tasks would make every step a segment step.
    by_task = {task: [e for e in examples if e.task == task] for task in TASKS}
    model.train()
    trained = list(model.parameters())
    heads, captured = None, {}
    if cfg.patch_loss_weight > 0:
        grid = cfg.image_size // cfg.patch_size
        targets = [patch_targets(scene, grid, cfg.patch_cells) for scene in scenes]
        shape_targets, color_targets = (torch.from_numpy(np.stack(t)) for t in zip(*targets, strict=True))
        heads = PatchHeads(model.config.vision_config.hidden_size, cfg.patch_cells)
        trained += list(heads.parameters())
        model.model.vision_tower.register_forward_hook(
            lambda module, args, output: captured.update(vision=output.last_hidden_state))
    optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    train_started, losses, patch_losses = time.perf_counter(), [], []
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, cfg)
        pool = by_task[TASKS[step % len(TASKS)]]
        chosen = [pool[i] for i in rng.integers(0, len(pool), cfg.batch_size)]
        loss = target_loss(model, _batch(processor, pixels, chosen), loc_ids, cfg.loc_sigma)
        losses.append(loss.item())
        if heads is not None:
            images = [e.image for e in chosen]
            patch_loss = heads.loss(captured["vision"], shape_targets[images], color_targets[images])
            patch_losses.append(patch_loss.item())
            loss = loss + cfg.patch_loss_weight * patch_loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        if log_every and (step + 1) % log_every == 0:
            elapsed = time.perf_counter() - train_started
            patch = f", patch loss {np.mean(patch_losses[-log_every:]):.4f}" if patch_losses else ""
            print(f"step {step + 1}/{cfg.steps}: loss {np.mean(losses[-log_every:]):.4f}{patch} ({elapsed:.0f} s)",
                  flush=True)
    train_seconds = time.perf_counter() - train_started

    model.eval()
    save_model_hub_layout(model, output)
    save_vae(vae, output / VAE_FILENAME)
    summary = {
        "config": dataclasses.asdict(cfg),
        "parameters": parameters,
        "examples": len(examples),
        "paligemma_seconds": round(train_seconds, 1),
        "final_loss": round(float(np.mean(losses[-100:])), 4),
        "final_patch_loss": round(float(np.mean(patch_losses[-100:])), 4) if patch_losses else None,
        "mask_vae": vae_log,
        "total_seconds": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
    }
    if cfg.init_from:  # the whole recipe: how the starting checkpoint was trained, then this run
        summary["init_from_training"] = json.loads((Path(cfg.init_from) / SUMMARY_FILE).read_text())
    (output / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
