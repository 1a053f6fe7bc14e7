import numpy as np
import pytest

from nnslim.adapt import switch
from nnslim.errors import NnslimError


def test_the_switch_keeps_the_better_block_and_never_loses() -> None:
    rng = np.random.default_rng(1)
    original = rng.integers(0, 256, (2, 40, 70), dtype=np.uint8)
    decoded = np.clip(original.astype(int) + rng.integers(-3, 4, original.shape), 0, 255).astype(np.uint8)
    filtered = decoded.copy()
    filtered[:, :32, :32] = original[:, :32, :32]  # perfect in the first block
    filtered[:, 32:, 32:] = 255 - original[:, 32:, 32:]  # ruinous in the last ones
    flags = switch.decide(original, decoded, filtered, 32)
    assert flags.shape == (2, 2, 3) and flags[:, 0, 0].all() and not flags[:, 1, 1:].any()
    out = switch.switched(decoded, filtered, flags, 32)
    err = lambda a: ((original.astype(int) - a) ** 2).reshape(2, -1).sum(axis=1)  # noqa: E731
    assert (err(out) <= err(decoded)).all() and (err(out) < err(decoded)).all()


def test_flags_that_do_not_cover_the_frames_or_a_bad_block_are_refused() -> None:
    plane = np.zeros((1, 64, 64), np.uint8)
    with pytest.raises(NnslimError, match="do not cover"):
        switch.switched(plane, plane, np.ones((1, 2, 2), bool), 64)
    with pytest.raises(NnslimError, match="block must be one of"):
        switch.decide(plane, plane, plane, 48)
