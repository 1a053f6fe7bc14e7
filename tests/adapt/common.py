"""A tiny multi-QP filter and one tiny coded sequence, for the adapt tests."""

from __future__ import annotations

import numpy as np
from torch import nn

from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from tests.conftest import random_filter

ARCH = ArchSpec("postfilter", {"channels": 8, "layers": 3, "qp_input": True})


def tiny_filter(seed: int = 0) -> nn.Module:
    """A randomly initialised tiny post-filter that takes the QP (its output layer not zero, so it filters)."""
    return random_filter(ARCH, seed, 0.05)


def tiny_pair(qp: int = 37, frames: int = 4, seed: int = 0) -> LumaPairs:
    """A smooth 80x48 sequence and a noisy copy of it as its decoded video."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:48, 0:80]
    original = np.stack([(128 + 60 * np.sin((x + 3 * f) / 9.0) * np.cos(y / 7.0)) for f in range(frames)])
    original = original.astype(np.uint8)
    decoded = np.clip(original + rng.normal(0, 4, original.shape), 0, 255).astype(np.uint8)
    return LumaPairs("Tiny", qp, decoded, original, 100.0, video_bytes=2000)
