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


def _save(fig: Any, path: Path) -> None:
    """Lay out, write as PNG atomically, and close a figure."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


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
    _save(fig, path)


def plot_pruning_steps(steps: list[dict[str, Any]], path: Path) -> None:
    """Seed 000's picture: Y-PSNR and frame time against compression step.

    Args:
        steps: Logged steps with ``test_psnr_y``, ``validation_psnr_y`` and ``ms_per_1080p``.
        path: PNG file to write.
    """
    x = list(range(len(steps)))
    fig, left = plt.subplots(figsize=(6.4, 3.8))
    for key, label, marker in (("test_psnr_y", "test Y-PSNR", "o"), ("validation_psnr_y", "validation Y-PSNR", ".")):
        values = [math.nan if s[key] is None else s[key] for s in steps]
        if not all(math.isnan(v) for v in values):
            left.plot(x, values, marker=marker, linestyle="none", color="tab:blue", alpha=1 if marker == "o" else 0.5,
                      label=label)  # fmt: skip
    left.set_xlabel("compression step (0 = original)")
    left.set_ylabel("Y-PSNR (dB)", color="tab:blue")
    right = left.twinx()
    seconds = [math.nan if s["ms_per_1080p"] is None else s["ms_per_1080p"] / 1000 for s in steps]
    right.plot(x, seconds, marker="^", linestyle="none", color="tab:orange",
               label="seconds per 1080p frame")  # fmt: skip
    right.set_ylabel("seconds per 1920x1080 frame", color="tab:orange")
    right.set_ylim(bottom=0)
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles=handles, fontsize=8, loc="best")
    left.grid(True, alpha=0.3)
    left.set_xticks(x)
    _save(fig, path)


def plot_crops(panels: dict[str, Any], path: Path, zoom: int = 3) -> None:
    """Show same-sized luma crops side by side, pixels enlarged ``zoom`` times so artefacts show.

    Args:
        panels: Title to a uint8 array (height, width), e.g. original, decoded, filtered.
        path: PNG file to write.
        zoom: Pixel enlargement (nearest neighbour).
    """
    count = len(panels)
    height, width = next(iter(panels.values())).shape
    fig, axes = plt.subplots(1, count, figsize=(count * width * zoom / 110, height * zoom / 110 + 0.5), squeeze=False)
    for ax, (title, crop) in zip(axes.flat, panels.items(), strict=True):
        ax.imshow(crop, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    _save(fig, path)


def plot_gains(sequences: list[str], gains: dict[str, list[float]], path: Path) -> None:
    """Grouped bars of Y-PSNR gain over the codec, one group per sequence, one bar per filter.

    Args:
        sequences: Group labels.
        gains: Filter label to one gain (dB) per sequence.
        path: PNG file to write.
    """
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(sequences)), 3.2))
    width = 0.8 / max(len(gains), 1)
    for i, (label, values) in enumerate(gains.items()):
        ax.bar([k + i * width for k in range(len(sequences))], values, width, label=label)
    ax.set_xticks([k + width * (len(gains) - 1) / 2 for k in range(len(sequences))], sequences)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("Y-PSNR gain over the codec (dB)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path) -> None:
    """File size against ms per 1080p frame for every sweep point, coloured by Y-PSNR loss; the front ringed.

    Args:
        rows: Points with ``bytes``, ``ms_per_1080p`` and ``loss_db``.
        front: The Pareto-optimal points among them.
        path: PNG file to write.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    loss = [r["loss_db"] for r in rows]
    dots = ax.scatter(
        [r["ms_per_1080p"] for r in rows], [r["bytes"] for r in rows], c=loss, cmap="viridis_r", s=28, zorder=2
    )
    ax.scatter(
        [r["ms_per_1080p"] for r in front],
        [r["bytes"] for r in front],
        s=110,
        facecolors="none",
        edgecolors="crimson",
        linewidths=1.4,
        label="Pareto front (size, time, loss)",
        zorder=3,
    )
    fig.colorbar(dots, ax=ax, label="Y-PSNR loss (dB)")
    ax.set_yscale("log")
    ax.set_xlabel("ms per 1920x1080 frame (PyTorch CPU)")
    ax.set_ylabel("file bytes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
