"""Quality metrics: PSNR per plane, VMAF through FFmpeg's libvmaf, and Bjontegaard deltas."""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bjontegaard
import numpy as np

from nnslim.errors import NnslimError
from nnslim.video.codecs import ffmpeg_exe
from nnslim.video.yuv import Yuv420, write_yuv

PSNR_CAP_DB = 100.0
BD_METHOD = "akima"

Curve = tuple[list[float], list[float]]
"""Rate-distortion points: (kbps values, PSNR dB values)."""


@dataclass(frozen=True)
class Psnr:
    """PSNR in dB per plane, and the 6:1:1 weighted YUV PSNR."""

    y: float
    u: float
    v: float

    @property
    def yuv(self) -> float:
        return (6 * self.y + self.u + self.v) / 8


def psnr_frames(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> np.ndarray:
    """PSNR of each frame of a plane stack, capped at 100 dB for identical frames.

    Args:
        reference: Shape (frames, height, width).
        test: Same shape.
        peak: Largest sample value (255 for 8-bit).
    """
    if reference.shape != test.shape:
        raise NnslimError(f"cannot compare planes of shape {reference.shape} and {test.shape}")
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2))
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(peak * peak / mse)
    return np.minimum(db, PSNR_CAP_DB)


def psnr(reference: Yuv420, test: Yuv420) -> Psnr:
    """Sequence PSNR per plane: the mean of the per-frame PSNRs, as the JVET reference software reports."""
    y, u, v = (float(np.mean(psnr_frames(r, t))) for r, t in zip(reference.planes, test.planes, strict=True))
    return Psnr(y, u, v)


def vmaf(reference: Path, test: Yuv420, width: int, height: int, fps: float) -> float:
    """Mean VMAF (model vmaf_v0.6.1) of decoded frames against a raw 8-bit reference file.

    Args:
        reference: The original ``.yuv`` file; its first ``test.frames`` frames are used.
        test: The decoded planes.
        width: Frame width.
        height: Frame height.
        fps: Frame rate.

    Raises:
        NnslimError: FFmpeg or libvmaf failed.
    """
    with tempfile.TemporaryDirectory() as scratch:
        distorted = Path(scratch) / "distorted.yuv"
        log = Path(scratch) / "vmaf.json"
        write_yuv(distorted, test)
        raw = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", f"{fps:.6g}"]
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            *raw,
            "-i",
            str(distorted),
            *raw,
            "-i",
            str(reference),
            "-frames:v",
            str(test.frames),
            "-lavfi",
            f"[0:v][1:v]libvmaf=log_fmt=json:log_path={log}:n_threads=2",
            "-f",
            "null",
            "-",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode or not log.is_file():
            raise NnslimError(f"libvmaf failed: {(result.stderr.strip().splitlines() or ['no message'])[-1]}")
        return float(json.loads(log.read_text())["pooled_metrics"]["vmaf"]["mean"])


def _bd(func: Callable[..., float], anchor: Curve, test: Curve) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bjontegaard warns on partial overlap; the delta is still defined
        try:
            return float(func(*anchor, *test, method=BD_METHOD))
        except (ValueError, AssertionError):
            return math.nan


def bd_rate(anchor: Curve, test: Curve) -> float:
    """Bjontegaard delta rate in percent (negative: the test saves bits), by Akima interpolation.

    Args:
        anchor: (kbps, PSNR dB) points of the reference curve.
        test: (kbps, PSNR dB) points of the tested curve.

    Returns:
        The delta over the overlapping quality range, or NaN where the curves do not
        overlap or are not monotonic.
    """
    return _bd(bjontegaard.bd_rate, anchor, test)


def bd_psnr(anchor: Curve, test: Curve) -> float:
    """Bjontegaard delta PSNR in dB (positive: the test is better), by Akima interpolation."""
    return _bd(bjontegaard.bd_psnr, anchor, test)
