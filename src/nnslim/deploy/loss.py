"""What int8 costs: Y-PSNR on whole frames as `nnslim filter` tiles them, and the output's SQNR on tiles."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

from nnslim.deploy.calibration import Feed
from nnslim.errors import NnslimError
from nnslim.models.apply import TileRunner, run_tiles
from nnslim.models.data import LumaPairs
from nnslim.video.metrics import psnr_frames


def mean_psnr_y(runner: Callable[[int], TileRunner], pairs: Sequence[LumaPairs], frame_step: int) -> float:
    """Mean Y-PSNR against the original frames of every ``frame_step``-th filtered frame, as ``validate`` averages it.

    Frames go through ``run_tiles`` with its default tiles and overlap, as `nnslim filter` runs them.

    Args:
        runner: A tile runner for a QP (a PyTorch filter's ``torch_runner``, or ``onnx_runner``).
        pairs: Decoded and original frames.
        frame_step: Every this many frames are filtered.

    Returns:
        The mean over pairs of the mean per-frame PSNR, in dB.

    Raises:
        NnslimError: No pairs, or a frame step under 1.
    """
    if not pairs:
        raise NnslimError("no frames to measure on")
    if frame_step < 1:
        raise NnslimError(f"frame step must be at least 1, not {frame_step}")
    means = []
    for pair in pairs:
        run = runner(pair.qp)
        filtered = np.stack([run_tiles(run, frame) for frame in pair.decoded[::frame_step]])
        means.append(float(np.mean(psnr_frames(pair.original[::frame_step], filtered))))
    return float(np.mean(means))


def outputs(session: ort.InferenceSession, feeds: Sequence[Feed]) -> list[np.ndarray]:
    """The model's output for each feed, flattened."""
    return [session.run(None, feed)[0].ravel() for feed in feeds]


def output_sqnr(reference: Sequence[np.ndarray], session: ort.InferenceSession, feeds: Sequence[Feed]) -> float:
    """Signal-to-quantization-noise ratio (dB) of a model's outputs against reference outputs, by ONNX Runtime's
    quantization debugger (``qdq_loss_debug``)."""
    return float(compute_signal_to_quantization_noice_ratio(list(reference), outputs(session, feeds)))
