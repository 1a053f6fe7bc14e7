"""Tiny filters and tiny in-memory frames for the deploy tests."""

from __future__ import annotations

import numpy as np
from torch import nn

from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from tests.conftest import random_filter

ARCH = ArchSpec("postfilter", {"channels": 8, "layers": 3})
QP_ARCH = ArchSpec("postfilter", {"channels": 8, "layers": 3, "qp_input": True})


def tiny_filter(arch: ArchSpec = ARCH, seed: int = 1) -> nn.Module:
    """A tiny filter with small random weights (its output layer not zero, so that it filters): close to the
    identity, so that what int8 adds is a clear loss (about 0.4 dB on ``tiny_pair`` frames)."""
    return random_filter(arch, seed, 0.01)


def tiny_pair(name: str, qp: int = 37, seed: int = 0, frames: int = 3) -> LumaPairs:
    """A moving 80x48 pattern and a noisy copy of it as its decoded video."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:80]
    original = np.stack([128 + 90 * np.sin((x + 5 * f + seed) / 7.0) * np.cos(y / 5.0) for f in range(frames)])
    original = original.astype(np.uint8)
    decoded = np.clip(original + rng.normal(0, 3, original.shape), 0, 255).astype(np.uint8)
    return LumaPairs(name, qp, decoded, original, 100.0)
