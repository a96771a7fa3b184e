"""PaliGemma's VQ-VAE mask decoder: 16 `<segNNN>` codewords -> a 64x64 mask in [-1, 1].

The architecture follows big_vision's definition (`big_vision/evaluators/proj/paligemma/
transfers/segmentation.py`, classes `ResBlock` and `Decoder`): codebook lookup into a 4x4 grid,
1x1 conv + ReLU, two residual blocks, four stride-2 transposed convs + ReLU (128, 128, 64, 32 ->
16 channels, 4 -> 64 pixels), then a 1x1 conv to one channel. The weights are big_vision's
published `vae-oid.npz`, which stores PyTorch-layout arrays; this module's parameter names are
those of the file, so it loads unchanged with a strict `load_state_dict`.
"""

from __future__ import annotations

import io
import zipfile

import fsspec
import numpy as np
import torch
from torch import nn

from pipelines.model.checkpoint import VAE_FILENAME, VaeLoadError
from pipelines.parse.segmentation import NUM_CODES
from schemas.columns import MASK_SIZE

CODEBOOK_KEY = "_vq_vae._embedding"  # (num_codes, embedding_dim), the width is read from the file
DECODER_PREFIX = "decoder."


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def _upsample(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    # Flax's ConvTranspose(kernel 4, stride 2, padding=2, transpose_kernel=True) doubles the size;
    # PyTorch's padding counts from the other side: 4 - 1 - 2 = 1.
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)


class MaskDecoder(nn.Module):
    """Codeword indices (B, 16) -> mask logits (B, 64, 64), positive inside the object."""

    def __init__(self, embedding_dim: int, num_codes: int = NUM_CODES):
        super().__init__()
        self.codebook = nn.Embedding(num_codes, embedding_dim)
        # Indices are those of the npz names (`decoder.0`, `decoder.2.net.0`, ..., `decoder.12`).
        self.decoder = nn.Sequential(
            nn.Conv2d(embedding_dim, 128, 1),
            nn.ReLU(),
            ResBlock(128),
            ResBlock(128),
            _upsample(128, 128),
            nn.ReLU(),
            _upsample(128, 64),
            nn.ReLU(),
            _upsample(64, 32),
            nn.ReLU(),
            _upsample(32, 16),
            nn.ReLU(),
            nn.Conv2d(16, 1, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        grid = self.codebook(codes).reshape(codes.shape[0], 4, 4, -1)  # row-major, as big_vision
        return self.decoder(grid.permute(0, 3, 1, 2))[:, 0]

    def state_dict_to_npz(self) -> dict[str, np.ndarray]:
        """This decoder's weights under the published file's names (for `np.savez`)."""
        arrays = {CODEBOOK_KEY: self.codebook.weight.detach().cpu().numpy()}
        for name, tensor in self.decoder.state_dict().items():
            arrays[DECODER_PREFIX + name] = tensor.detach().cpu().numpy()
        return arrays


def read_npz(uri: str) -> dict[str, np.ndarray]:
    """All arrays of a local or object-storage `.npz`; a pickled or malformed file is refused."""
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read()
    except (OSError, ValueError) as err:
        raise VaeLoadError(f"cannot read the mask decoder file {uri!r}: {err}") from err
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)  # a pickle raises ValueError here
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive of named arrays")
        with loaded as npz:
            return {name: npz[name] for name in npz.files}  # an object array raises ValueError here
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise VaeLoadError(
            f"{uri!r} is not a mask decoder .npz in big_vision's layout (pickled data is never loaded): {err}"
        ) from err


def load_mask_decoder(uri: str, device: torch.device | str = "cpu") -> MaskDecoder:
    """Build the decoder from `vae-oid.npz` (or a file with the same names and shapes) at `uri`.

    Encoder arrays in the file are ignored; every decoder array must be present with the shape
    the architecture needs, or VaeLoadError names what differs.
    """
    arrays = read_npz(uri)
    if CODEBOOK_KEY not in arrays:
        raise VaeLoadError(f"{uri!r} has no {CODEBOOK_KEY!r} array; is it big_vision's {VAE_FILENAME}?")
    codebook = arrays[CODEBOOK_KEY]
    if codebook.ndim != 2 or codebook.shape[0] != NUM_CODES:
        raise VaeLoadError(f"{uri!r}: {CODEBOOK_KEY} has shape {codebook.shape}, expected ({NUM_CODES}, width)")
    decoder = MaskDecoder(embedding_dim=codebook.shape[1])
    # The module's own names are the file's, except the codebook's.
    arrays = {name: a for name, a in arrays.items() if name.startswith(DECODER_PREFIX)}
    arrays["codebook.weight"] = codebook
    state = {name: torch.from_numpy(np.asarray(a, np.float32)) for name, a in arrays.items()}
    try:
        decoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise VaeLoadError(f"{uri!r} does not match the mask decoder's layout: {err}") from err
    return decoder.to(device).eval()


def decode_masks(decoder: MaskDecoder, codes: np.ndarray) -> np.ndarray:
    """Decode all masks of a batch in one call: int (N, 16) -> float32 (N, 64, 64) logits."""
    if len(codes) == 0:
        return np.zeros((0, MASK_SIZE, MASK_SIZE), np.float32)
    device = decoder.codebook.weight.device
    with torch.inference_mode():
        logits = decoder(torch.as_tensor(np.asarray(codes), dtype=torch.long, device=device))
    return logits.float().cpu().numpy()
