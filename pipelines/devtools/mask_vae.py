"""A small VQ-VAE for object masks, trained here so a trained PaliGemma can `segment` offline.

PaliGemma writes a mask as 16 `<segNNN>` codewords: a 4x4 grid of indices into a 128-entry
codebook, decoded by big_vision's VQ-VAE decoder (`pipelines/mask_decoder.py`). The published
weights (`vae-oid.npz`) cannot be downloaded here, so this module trains the same decoder, with an
encoder of the mirrored shape, on masks cropped to their box and resized to 64x64, and saves the
decoder under the published file's names: the pipeline loads it exactly as it loads the real file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from pipelines.model.mask_decoder import MaskDecoder, ResBlock
from pipelines.parse.segmentation import CODES_PER_MASK, NUM_CODES
from schemas.columns import MASK_SIZE

_COMMITMENT = 0.25  # weight of the encoder's pull towards its codeword (van den Oord et al., 2017)


class MaskEncoder(nn.Module):
    """Mask (B, 64, 64) in {0, 1} -> (B, 4, 4, D) vectors: the decoder's layers mirrored."""

    def __init__(self, embedding_dim: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2, padding=1),
            nn.ReLU(),
            ResBlock(128),
            ResBlock(128),
            nn.Conv2d(128, embedding_dim, 1),
        )

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        return self.encoder(masks[:, None] * 2 - 1).permute(0, 2, 3, 1)  # channels last, row-major grid


class MaskVae(nn.Module):
    """Encoder, nearest-codeword quantiser and big_vision's decoder."""

    def __init__(self, embedding_dim: int = 32):
        super().__init__()
        self.encoder = MaskEncoder(embedding_dim)
        self.decoder = MaskDecoder(embedding_dim)

    def quantise(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, 4, 4, D) -> (B, 16) indices of the nearest codewords, in the decoder's row-major order."""
        flat = vectors.reshape(-1, vectors.shape[-1])
        distances = torch.cdist(flat, self.decoder.codebook.weight)
        return distances.argmin(dim=1).reshape(vectors.shape[0], CODES_PER_MASK)

    def loss(self, masks: torch.Tensor) -> torch.Tensor:
        """Reconstruction (BCE on the logits) + codebook + commitment, straight-through gradients."""
        vectors = self.encoder(masks)
        codes = self.quantise(vectors)
        chosen = self.decoder.codebook(codes).reshape(vectors.shape)
        straight_through = vectors + (chosen - vectors).detach()
        grid = straight_through.permute(0, 3, 1, 2)
        logits = self.decoder.decoder(grid)[:, 0]
        reconstruction = F.binary_cross_entropy_with_logits(logits, masks)
        codebook = F.mse_loss(chosen, vectors.detach())
        commitment = F.mse_loss(vectors, chosen.detach())
        return reconstruction + codebook + _COMMITMENT * commitment

    @torch.no_grad()
    def encode(self, masks: np.ndarray) -> np.ndarray:
        """Box-cropped 64x64 masks -> (N, 16) codewords, i.e. the `<segNNN>` a model should write."""
        return self.quantise(self.encoder(torch.as_tensor(masks, dtype=torch.float32))).numpy()


def mask_in_box(mask: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """The full-image bool mask cropped to its COCO box [x, y, w, h] and resized to 64x64 (0/1).

    The inverse of what the pipeline does with a decoded mask (bilinear resize into the box,
    threshold at 0), so a perfect reconstruction lands back on the original pixels.
    """
    x, y, w, h = bbox
    crop = Image.fromarray(mask[y:y + h, x:x + w].astype(np.float32))
    resized = np.asarray(crop.resize((MASK_SIZE, MASK_SIZE), Image.Resampling.BILINEAR))
    return (resized > 0.5).astype(np.float32)


def train_mask_vae(masks: np.ndarray, steps: int, batch_size: int = 64, embedding_dim: int = 32, seed: int = 0,
                   lr: float = 2e-3, log_every: int = 100) -> tuple[MaskVae, dict]:
    """Train on box-cropped masks (N, 64, 64); returns the model and figures for the training log."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vae = MaskVae(embedding_dim)
    # Codewords start on encoder outputs, so none is born dead far from the data.
    with torch.no_grad():
        sample = torch.as_tensor(masks[rng.choice(len(masks), min(len(masks), 512), replace=False)])
        vectors = vae.encoder(sample).reshape(-1, embedding_dim)
        vae.decoder.codebook.weight.copy_(vectors[torch.as_tensor(rng.choice(len(vectors), NUM_CODES))])
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    started, losses = time.perf_counter(), []
    for step in range(steps):
        batch = torch.as_tensor(masks[rng.integers(0, len(masks), batch_size)])
        loss = vae.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"mask vae step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f}", flush=True)
    vae.eval()
    return vae, {"steps": steps, "batch_size": batch_size, "seconds": round(time.perf_counter() - started, 1),
                 "final_loss": float(np.mean(losses[-50:]))}


def reconstruction_iou(vae: MaskVae, masks: np.ndarray) -> float:
    """Mean IoU between masks and their decoded codewords (thresholded at 0), on 64x64."""
    with torch.no_grad():
        logits = vae.decoder(torch.as_tensor(vae.encode(masks)))
    predicted, truth = logits.numpy() > 0, masks > 0.5
    union = (predicted | truth).sum(axis=(1, 2))
    return float(np.mean((predicted & truth).sum(axis=(1, 2)) / np.maximum(union, 1)))


def save_vae(vae: MaskVae, path: str | Path) -> Path:
    """Write the codebook and decoder as an `.npz` in the published layout. The encoder is left
    out: the pipeline never uses it, and it would double the size of the committed checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # a file object keeps numpy from appending a second ".npz"
        np.savez(f, **vae.decoder.state_dict_to_npz())
    return path
