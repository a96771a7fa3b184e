"""Masks in Label Studio's brush RLE (`brushlabels` with `format: "rle"`). Pure NumPy.

This is not COCO's RLE. Label Studio reads a bit stream in the layout of thi.ng's rle-pack: a
32-bit element count, the word size less one (5 bits), four run-length field widths less one
(4 bits each), then chunks of: 1 flag bit (1: one value repeated, 0: literal values), 2 bits
choosing a width, the run length less one in that many bits, and the value(s) in word-size bits.
The elements are the image's RGBA bytes in row-major order, and the brush is the alpha channel.
Run-length widths 3, 4, 8 and 16 bits and 8-bit words are what Label Studio's own encoder uses;
like it, a single value is written as a literal chunk and every longer run as a repeat chunk, so
the bytes are the same as the label-studio-sdk converter's `mask2rle`.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 8
RUN_WIDTHS = (3, 4, 8, 16)
CHANNELS = 4  # RGBA
MAX_RUN = 1 << RUN_WIDTHS[-1]


def mask_to_brush_rle(mask: np.ndarray, value: int = 255) -> list[int]:
    """A (height, width) boolean mask -> Label Studio brush RLE bytes, as a list of ints."""
    flat = np.repeat(np.where(np.asarray(mask, dtype=bool), value, 0).astype(np.uint8).ravel(), CHANNELS)
    run_values, run_lengths = _runs(flat)
    # Runs longer than the widest field are cut into full chunks and a remainder.
    full, rest = np.divmod(run_lengths, MAX_RUN)
    pieces = np.where(rest > 0, full + 1, full)
    chunk_values = np.repeat(run_values, pieces)
    chunk_lengths = np.full(int(pieces.sum()), MAX_RUN, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    chunk_lengths[last] = np.where(rest > 0, rest, MAX_RUN)
    # The flag and the field width follow the whole run's length, also for the chunks of a long one.
    run_of_chunk = np.repeat(run_lengths, pieces)
    limits = np.array([1 << w for w in RUN_WIDTHS])
    width_index = np.minimum(np.searchsorted(limits, run_of_chunk), len(RUN_WIDTHS) - 1)
    fields_per_chunk = 4  # flag, width index, length, value
    values = np.empty(len(chunk_lengths) * fields_per_chunk, dtype=np.int64)
    widths = np.empty_like(values)
    values[0::4], widths[0::4] = run_of_chunk > 1, 1
    values[1::4], widths[1::4] = width_index, 2
    values[2::4], widths[2::4] = chunk_lengths - 1, np.array(RUN_WIDTHS)[width_index]
    values[3::4], widths[3::4] = chunk_values, WORD_BITS
    header_values = [len(flat), WORD_BITS - 1, *(w - 1 for w in RUN_WIDTHS)]
    header_widths = [32, 5, 4, 4, 4, 4]
    bits = _bits(np.concatenate([header_values, values]), np.concatenate([header_widths, widths]))
    # Zero bits up to the next whole byte, and a whole zero byte when already there, as Label
    # Studio's encoder pads (the decoder stops after the element count and ignores them).
    padding = np.zeros(8 - len(bits) % 8, dtype=np.uint8)
    return np.packbits(np.concatenate([bits, padding])).tolist()


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and lengths of the runs of equal elements."""
    if len(flat) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    lengths = np.diff(np.append(starts, len(flat)))
    return flat[starts].astype(np.int64), lengths.astype(np.int64)


def _bits(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Each value written big-endian in its width, all concatenated, as a 0/1 uint8 array."""
    widest = int(widths.max())
    positions = np.arange(widest)
    shifts = widths[:, None] - 1 - positions[None, :]
    grid = (values[:, None] >> np.maximum(shifts, 0)) & 1
    return grid[positions[None, :] < widths[:, None]].astype(np.uint8)


def brush_rle_to_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE bytes -> a (height, width) boolean mask (the alpha channel, nonzero). Reads
    any field widths the header names, so it takes masks drawn in Label Studio as well as ours."""
    bits = np.unpackbits(np.asarray(rle, dtype=np.uint8))
    position = 0

    def take(count: int) -> int:
        nonlocal position
        field = bits[position:position + count]
        if len(field) < count:
            raise ValueError("brush RLE ends inside a field")
        position += count
        return int(field.dot(1 << np.arange(count - 1, -1, -1, dtype=np.int64))) if count else 0

    total = take(32)
    word = take(5) + 1
    widths = [take(4) + 1 for _ in range(4)]
    if total != height * width * CHANNELS:
        raise ValueError(f"brush RLE holds {total} values, not {height} x {width} x {CHANNELS}")
    flat = np.empty(total, dtype=np.int64)
    filled = 0
    while filled < total:
        repeated = take(1)
        length = take(widths[take(2)]) + 1
        if filled + length > total:
            raise ValueError("brush RLE runs past its element count")
        if repeated:
            flat[filled:filled + length] = take(word)
        else:
            flat[filled:filled + length] = [take(word) for _ in range(length)]
        filled += length
    return flat.reshape(height, width, CHANNELS)[:, :, CHANNELS - 1] > 0
