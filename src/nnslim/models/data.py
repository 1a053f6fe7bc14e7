"""Training pairs (decoded, original) from real encodes of the `train` split, and patch sampling."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnslim.errors import NnslimError
from nnslim.video.codecs import get_codec
from nnslim.video.compare import Point, run_point
from nnslim.video.decode import decode_file
from nnslim.video.yuv import Sequence, read_yuv, to_8bit


@dataclass(frozen=True)
class LumaPairs:
    """Decoded and original luma of one sequence coded at one QP.

    Attributes:
        name: Sequence name.
        qp: Ladder QP of the encode.
        decoded: Decoded luma, uint8, shape (frames, height, width).
        original: Original luma, same shape.
        kbps: Bitrate of the encode.
        psnr_uv: The codec's U and V PSNR over the whole encode.
        video_bytes: Bytes of the video bitstream (0 when not known).
    """

    name: str
    qp: int
    decoded: np.ndarray
    original: np.ndarray
    kbps: float
    psnr_uv: tuple[float, float] = (math.nan, math.nan)
    video_bytes: int = 0


def encode_pairs(
    sequences: list[Sequence],
    codec: str,
    qps: tuple[int, ...],
    cache: Path,
    frames: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> list[LumaPairs]:
    """Encode each sequence at each QP (reusing cached encodes) and return the luma pairs.

    Args:
        sequences: The sequences; callers pass the `train` split only.
        codec: Codec name.
        qps: Ladder QPs.
        cache: Encode cache shared with the codec comparison.
        frames: Use only the first ``frames`` frames of each sequence.
        on_step: Called with a label before each encode, for progress.
    """
    spec = get_codec(codec)
    pairs = []
    for seq in sequences:
        original = read_yuv(seq, min(frames or seq.frames, seq.frames)).y
        for qp in qps:
            if on_step:
                on_step(f"{seq.name} {codec} QP {qp}")
            row = run_point(Point(seq, spec, qp), frames, cache, with_vmaf=False)
            video = decode_file(Path(row["bitstream"]), spec.muxer).video
            video = video if video.y.dtype == np.uint8 else to_8bit(video)
            psnr_uv = (float(row["psnr_u"]), float(row["psnr_v"]))
            size = math.ceil(int(row["bits"]) / 8)
            pairs.append(LumaPairs(seq.name, qp, video.y, original, float(row["kbps"]), psnr_uv, size))
    return pairs


def sample_batch(
    pairs: list[LumaPairs], rng: np.random.Generator, batch: int, patch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw random patches with random flips and 90-degree turns.

    Args:
        pairs: Where to draw from; every source is equally likely, then every frame and position.
        rng: Random generator; its state decides the batch, so a saved state replays it exactly.
        batch: Patches per batch.
        patch: Patch side in pixels.

    Returns:
        (decoded, original, qp): float tensors in [0, 1] of shape (batch, 1, patch, patch),
        and the QP of each patch.
    """
    decoded = np.empty((batch, patch, patch), dtype=np.uint8)
    original = np.empty_like(decoded)
    qps = np.empty(batch, dtype=np.float32)
    for i in range(batch):
        source = pairs[int(rng.integers(len(pairs)))]
        frames, height, width = source.decoded.shape
        if height < patch or width < patch:
            raise NnslimError(f"{source.name} ({width}x{height}) is smaller than a {patch}-pixel patch")
        f = int(rng.integers(frames))
        y = int(rng.integers(height - patch + 1))
        x = int(rng.integers(width - patch + 1))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        for out, plane in ((decoded, source.decoded), (original, source.original)):
            tile = np.rot90(plane[f, y : y + patch, x : x + patch], turns)
            out[i] = tile[:, ::-1] if flip else tile
        qps[i] = source.qp
    scale = 1.0 / 255.0
    return (
        torch.from_numpy(decoded).unsqueeze(1).float() * scale,
        torch.from_numpy(original).unsqueeze(1).float() * scale,
        torch.from_numpy(qps),
    )
