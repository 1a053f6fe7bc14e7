"""Model inputs drawn from decoded frames: calibration tiles, and the reader that hands them to ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import INPUT, QP_INPUT
from nnslim.models.data import LumaPairs

Feed = dict[str, np.ndarray]
"""One run's inputs by name: ``luma`` (1, 1, h, w) float32 in [0, 1], and ``qp`` (1,) for filters that take it."""


def tile_feeds(pairs: Sequence[LumaPairs], count: int, side: int, seed: int, qp_input: bool) -> list[Feed]:
    """Seeded random tiles of the pairs' decoded luma, as model inputs.

    Each tile comes from a pair, a frame and a position drawn uniformly; a frame smaller than
    ``side`` gives its whole width or height. Only the decoded frames are read, never the originals.

    Args:
        pairs: Where the tiles come from (for calibration: the training split only).
        count: Number of tiles.
        side: Tile side in luma samples.
        seed: Seed of the draw.
        qp_input: Add each tile's QP (its pair's) as the ``qp`` input.

    Returns:
        ``count`` feeds.

    Raises:
        NnslimError: No pairs, no frames, or a count or side under 1.
    """
    if count < 1 or side < 1:
        raise NnslimError(f"tile count and side must be at least 1, not {count} and {side}")
    if not pairs or any(p.decoded.shape[0] == 0 for p in pairs):
        raise NnslimError("no decoded frames to draw tiles from")
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        pair = pairs[int(rng.integers(len(pairs)))]
        frames, height, width = pair.decoded.shape
        h, w = min(side, height), min(side, width)
        frame, top, left = (int(rng.integers(n)) for n in (frames, height - h + 1, width - w + 1))
        luma = pair.decoded[frame, top : top + h, left : left + w].astype(np.float32) / 255.0
        feed = {INPUT: luma[None, None]}
        if qp_input:
            feed[QP_INPUT] = np.array([pair.qp], dtype=np.float32)
        feeds.append(feed)
    return feeds


class FeedReader(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator the given feeds, in order, once; then ``None``."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self._count = len(feeds)
        self._feeds: Iterator[Feed] = iter(feeds)

    def get_next(self) -> Feed | None:
        return next(self._feeds, None)

    def __len__(self) -> int:
        return self._count
