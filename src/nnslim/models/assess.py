"""How much a filter gains over the codec alone, on real encodes of held-out sequences."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nnslim.models.apply import filter_frames
from nnslim.models.data import encode_pairs
from nnslim.video.metrics import bd_psnr, bd_rate, psnr_frames
from nnslim.video.yuv import Sequence


def filter_gain(
    model: nn.Module,
    sequences: list[Sequence],
    codec: str,
    qps: tuple[int, ...],
    cache: Path,
    frames: int | None = None,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Y-PSNR of codec alone and codec + filter per sequence and QP, and the BD-rate between them.

    The filtered video has the same bitrate as the decoded one (a post-filter sends no
    bits), so BD-rate compares the two Y-PSNR curves at the same kbps, Akima-interpolated.

    Args:
        model: The filter.
        sequences: Sequences to measure on (callers pass the `test` split).
        codec: Codec name.
        qps: Ladder QPs.
        cache: Encode cache.
        frames: First frames of each sequence to use (all when None).
        on_step: Called with a label before each (sequence, QP).

    Returns:
        ``rows`` (one per sequence and QP), ``per_sequence`` (BD-rate and BD-PSNR when there
        are four QPs or more) and the ``mean`` Y-PSNR gain.
    """
    rows: list[dict[str, Any]] = []
    for seq in sequences:
        for pair in encode_pairs([seq], codec, qps, cache, frames):
            if on_step:
                on_step(f"{seq.name} QP {pair.qp}")
            filtered = filter_frames(model, pair.decoded, pair.qp)
            before = float(np.mean(psnr_frames(pair.original, pair.decoded)))
            after = float(np.mean(psnr_frames(pair.original, filtered)))
            rows.append(
                {
                    "sequence": seq.name,
                    "qp": pair.qp,
                    "kbps": pair.kbps,
                    "psnr_y_codec": before,
                    "psnr_y_filtered": after,
                    "gain_db": after - before,
                }
            )
    per_sequence = []
    for seq in sequences:
        mine = sorted((r for r in rows if r["sequence"] == seq.name), key=lambda r: r["kbps"])
        kbps = [r["kbps"] for r in mine]
        codec_curve = (kbps, [r["psnr_y_codec"] for r in mine])
        filter_curve = (kbps, [r["psnr_y_filtered"] for r in mine])
        enough = len(mine) >= 4
        per_sequence.append(
            {
                "sequence": seq.name,
                "gain_db": float(np.mean([r["gain_db"] for r in mine])),
                "bd_rate": bd_rate(codec_curve, filter_curve) if enough else math.nan,
                "bd_psnr": bd_psnr(codec_curve, filter_curve) if enough else math.nan,
            }
        )
    return {
        "rows": rows,
        "per_sequence": per_sequence,
        "mean": {
            "gain_db": float(np.mean([r["gain_db"] for r in rows])),
            "bd_rate": float(np.nanmean([p["bd_rate"] for p in per_sequence])) if len(qps) >= 4 else math.nan,
        },
    }
