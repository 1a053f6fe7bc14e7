"""How much a filter gains over the codec alone, on real encodes of held-out sequences."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from nnslim.models.apply import filter_frames
from nnslim.models.data import LumaPairs
from nnslim.video.metrics import bd_psnr, bd_rate, psnr_frames


def filter_gain(
    model: nn.Module, pairs: list[LumaPairs], on_step: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Y-PSNR of codec alone and codec + filter per sequence and QP, and the BD-rate between them.

    Args:
        model: The filter.
        pairs: Decoded and original frames of held-out sequences (see ``models.splits``).
        on_step: Called with a label before each (sequence, QP).

    Returns:
        The summary of :func:`summarise` over one row per sequence and QP.
    """
    rows: list[dict[str, Any]] = []
    for pair in pairs:
        if on_step:
            on_step(f"{pair.name} QP {pair.qp}")
        filtered = filter_frames(model, pair.decoded, pair.qp)
        before = float(np.mean(psnr_frames(pair.original, pair.decoded)))
        after = float(np.mean(psnr_frames(pair.original, filtered)))
        rows.append(
            {
                "sequence": pair.name,
                "qp": pair.qp,
                "kbps": pair.kbps,
                "psnr_y_codec": before,
                "psnr_y_filtered": after,
                "gain_db": after - before,
            }
        )
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-sequence and mean gain, and BD-rate of codec + filter against codec alone.

    The filtered video has the same bitrate as the decoded one (a post-filter sends no
    bits), so BD-rate compares the two Y-PSNR curves at the same kbps, Akima-interpolated.
    A sequence measured at fewer than four QPs gets no BD-rate (NaN).

    Args:
        rows: One per sequence and QP, as :func:`filter_gain` makes them; rows of several
            single-QP filters (one model per QP) may be joined.

    Returns:
        ``rows``, ``per_sequence`` (gain, BD-rate and BD-PSNR) and the ``mean`` gain and BD-rate.
    """
    per_sequence = []
    for name in dict.fromkeys(r["sequence"] for r in rows):
        mine = sorted((r for r in rows if r["sequence"] == name), key=lambda r: r["kbps"])
        kbps = [r["kbps"] for r in mine]
        codec_curve = (kbps, [r["psnr_y_codec"] for r in mine])
        filter_curve = (kbps, [r["psnr_y_filtered"] for r in mine])
        enough = len(mine) >= 4
        per_sequence.append(
            {
                "sequence": name,
                "gain_db": float(np.mean([r["gain_db"] for r in mine])),
                "bd_rate": bd_rate(codec_curve, filter_curve) if enough else math.nan,
                "bd_psnr": bd_psnr(codec_curve, filter_curve) if enough else math.nan,
            }
        )
    rates = [p["bd_rate"] for p in per_sequence if not math.isnan(p["bd_rate"])]
    return {
        "rows": rows,
        "per_sequence": per_sequence,
        "mean": {
            "gain_db": float(np.mean([r["gain_db"] for r in rows])),
            "bd_rate": float(np.mean(rates)) if rates else math.nan,
        },
    }
