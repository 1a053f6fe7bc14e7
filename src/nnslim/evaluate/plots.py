"""Figures drawn with matplotlib (Agg backend, no screen needed)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from nnslim.io import atomic_write_bytes


def plot_rd_curves(rows: list[dict[str, Any]], path: Path, metric: str = "psnr_y") -> None:
    """Draw rate-distortion curves, one panel per sequence, one line per codec.

    Args:
        rows: Comparison rows with ``codec``, ``sequence``, ``kbps`` and ``metric``.
        path: PNG file to write.
        metric: The quality key on the y axis.
    """
    sequences = list(dict.fromkeys(r["sequence"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    cols = min(3, len(sequences))
    nrows = math.ceil(len(sequences) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, seq in zip(axes.flat, sequences, strict=False):
        for codec in codecs:
            points = sorted((r["kbps"], r[metric]) for r in rows if r["sequence"] == seq and r["codec"] == codec)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=codec)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(seq, fontsize=10)
        ax.set_xlabel("kbit/s")
        ax.set_ylabel("Y-PSNR (dB)" if metric == "psnr_y" else metric)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(sequences) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
