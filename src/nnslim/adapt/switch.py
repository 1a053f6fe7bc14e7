"""The encoder's switch: where the filter is applied, per block of each frame.

The encoder holds the original, so it compares, block by block, the squared error of the
filtered and of the decoded luma, and turns the filter on only where it helps, as ALF and the
NNVC filters do with their CTU-level flags. A frame whose blocks are all off, and a sequence
whose frames are all off, need no further flags (``signalled`` says which flags are sent).
"""

from __future__ import annotations

import math

import numpy as np

from nnslim.errors import NnslimError

BLOCKS = (32, 64, 128, 256)
"""Block sides (luma samples) a switch may use."""


def grid(height: int, width: int, block: int) -> tuple[int, int]:
    """Rows and columns of ``block``-sided blocks covering a frame (the last ones may be partial)."""
    return math.ceil(height / block), math.ceil(width / block)


def _block_sse(reference: np.ndarray, test: np.ndarray, block: int) -> np.ndarray:
    """Squared error per block, shape (frames, rows, cols)."""
    frames, height, width = reference.shape
    rows, cols = grid(height, width, block)
    error = (reference.astype(np.int64) - test.astype(np.int64)) ** 2
    padded = np.zeros((frames, rows * block, cols * block), np.int64)
    padded[:, :height, :width] = error
    return padded.reshape(frames, rows, block, cols, block).sum(axis=(2, 4))


def decide(original: np.ndarray, decoded: np.ndarray, filtered: np.ndarray, block: int) -> np.ndarray:
    """Per block, whether filtering lowers the squared error against the original: bool (frames, rows, cols).

    Raises:
        NnslimError: Planes of different shapes, or a block size not in ``BLOCKS``.
    """
    if not original.shape == decoded.shape == filtered.shape:
        raise NnslimError(f"planes of shapes {original.shape}, {decoded.shape} and {filtered.shape}")
    if block not in BLOCKS:
        raise NnslimError(f"the switch's block must be one of {', '.join(map(str, BLOCKS))}, not {block}")
    return _block_sse(original, filtered, block) < _block_sse(original, decoded, block)


def switched(decoded: np.ndarray, filtered: np.ndarray, flags: np.ndarray, block: int) -> np.ndarray:
    """The output a decoder makes: filtered luma where the block's flag is on, decoded luma elsewhere.

    Raises:
        NnslimError: Flags that do not cover the frames in ``block``-sided blocks.
    """
    frames, height, width = decoded.shape
    if flags.shape != (frames, *grid(height, width, block)):
        raise NnslimError(f"flags of shape {flags.shape} do not cover {frames} frames of {width}x{height}")
    mask = np.repeat(np.repeat(flags.astype(bool), block, axis=1), block, axis=2)[:, :height, :width]
    return np.where(mask, filtered, decoded)
