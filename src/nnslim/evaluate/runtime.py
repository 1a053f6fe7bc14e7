"""Run filters outside PyTorch: ONNX export, ONNX Runtime sessions, and CPU time per frame.

A filter is exported with one input ``luma`` (N, 1, H, W) in [0, 1] and one output ``restored``
of the same shape, with batch, height and width left dynamic; a filter that takes the QP gets a
second input ``qp`` of shape (N,) (the QP itself, float32, as the PyTorch filter takes it).
Timings are wall-clock milliseconds per 8-bit luma frame, filtered in overlapping tiles as
`nnslim filter` filters it, one frame per call.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes, require_writable_file
from nnslim.models.apply import WHOLE_FRAME, TileRunner, run_tiles, torch_runner
from nnslim.models.filters import takes_qp
from nnslim.models.train import forward

RUNTIMES = ("torch", "onnxruntime", "onnxruntime_int8")
"""Where a filter runs: PyTorch (float32), ONNX Runtime (float32), or ONNX Runtime on an int8 QDQ model (``deploy``)."""
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
DEFAULT_TILES = {"torch": 256, "onnxruntime": 256, "onnxruntime_int8": WHOLE_FRAME}
"""Each runtime's tile side, the fastest measured here (benchmarks/speed.py): small tiles keep PyTorch's and
ONNX Runtime's float32 activations in the CPU caches, while ONNX Runtime's int8 kernels run a whole 1080p
frame about 4x faster than 256-pixel tiles. A filter whose receptive field fits in the overlap gives the same
samples at any tile side."""
MAX_ONNX_BYTES = 1 << 30
"""The largest ONNX filter file read (a filter is kilobytes to megabytes; this bounds a hostile one)."""
INPUT = "luma"
QP_INPUT = "qp"
OUTPUT = "restored"
EXAMPLE_QP = 37.0


def _cores() -> int:
    return os.cpu_count() or 1


def _threads(threads: int | None) -> int:
    if threads is None:
        return _cores()
    if threads < 1:
        raise NnslimError(f"threads must be at least 1, not {threads}")
    return threads


def _device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _frames(batch: int, height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random luma batch in [0, 1] and one QP per frame, both float32 on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    luma = torch.rand(batch, 1, height, width, generator=generator)
    qp = torch.full((batch,), EXAMPLE_QP) - 5.0 * torch.arange(batch, dtype=torch.float32)
    return luma, qp


def export_onnx(model: nn.Module, path: Path, opset: int = 17) -> Path:
    """Export a filter to ONNX with dynamic batch, height and width, written atomically.

    Uses the TorchScript-based exporter (``dynamo=False``): the torch.export-based one needs
    onnxscript. The model is traced in eval mode; its training mode is restored afterwards.

    Args:
        model: A filter (N, 1, H, W) -> (N, 1, H, W); one that takes the QP (``takes_qp``) is
            exported with a second input ``qp`` of shape (N,).
        path: The ``.onnx`` file to write; its directory must exist.
        opset: ONNX opset version.

    Returns:
        The path written.

    Raises:
        NnslimError: The directory is missing or not writable, or the model does not export.
    """
    require_writable_file(path)
    qp_input = takes_qp(model)
    # The example size differs from onnx_max_difference's default, so that a check also covers the dynamic axes.
    luma, qp = _frames(1, 48, 64)
    device = _device(model)
    args = (luma.to(device), qp.to(device)) if qp_input else (luma.to(device),)
    input_names = [INPUT, QP_INPUT] if qp_input else [INPUT]
    image_axes = {0: "batch", 2: "height", 3: "width"}
    dynamic_axes: dict[str, dict[int, str]] = {INPUT: image_axes, OUTPUT: image_axes}
    if qp_input:
        dynamic_axes[QP_INPUT] = {0: "batch"}
    was_training = model.training
    model.eval()
    # torch.onnx.export is typed to take a file name: export to a scratch file, check it, then write atomically.
    with tempfile.TemporaryDirectory(prefix="nnslim-onnx-") as scratch:
        draft = Path(scratch) / "filter.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
                torch.onnx.export(
                    model,
                    args,
                    draft,
                    input_names=input_names,
                    output_names=[OUTPUT],
                    dynamic_axes=dynamic_axes,
                    opset_version=opset,
                    dynamo=False,
                )
        except torch.onnx.errors.OnnxExporterError as exc:
            raise NnslimError(f"cannot export {type(model).__name__} to ONNX: {exc}") from None
        finally:
            model.train(was_training)
        data = draft.read_bytes()
    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise NnslimError(f"the ONNX export of {type(model).__name__} is invalid: {exc}") from None
    atomic_write_bytes(path, data)
    return path


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of ``RUNTIMES``.

    Raises:
        NnslimError: Another name.
    """
    if runtime not in RUNTIMES:
        raise NnslimError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    return runtime


def _check_file(path: Path) -> None:
    """Refuse a missing ONNX file, or one over ``MAX_ONNX_BYTES``, before anything reads it."""
    if not path.is_file():
        raise NnslimError(f"{path}: no such ONNX file")
    if path.stat().st_size > MAX_ONNX_BYTES:
        raise NnslimError(f"{path}: over the limit of {MAX_ONNX_BYTES >> 20} MiB for an ONNX filter")


def onnx_runtime_of(path: Path) -> str:
    """The runtime an ONNX file is made for: ``onnxruntime_int8`` when it holds quantize nodes (QDQ form).

    Raises:
        NnslimError: A missing file, one over ``MAX_ONNX_BYTES``, or one ONNX cannot read.
    """
    _check_file(Path(path))
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx's parse errors share no base class below Exception
        raise NnslimError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    return "onnxruntime_int8" if any(node.op_type in QDQ_OPS for node in graph.node) else "onnxruntime"


def onnx_takes_qp(session: ort.InferenceSession) -> bool:
    """Whether an exported filter takes the QP as its second input."""
    return len(session.get_inputs()) == 2


def onnx_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """Open an exported filter in ONNX Runtime on the CPU.

    Args:
        path: An ``.onnx`` file written by ``export_onnx``.
        threads: Intra-op threads; every core (``os.cpu_count()``) by default.

    Returns:
        The inference session.

    Raises:
        NnslimError: A missing or oversized file, a file ONNX Runtime cannot load, or a graph that is not a
            filter (one or two inputs, one output).
    """
    path = Path(path)
    _check_file(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors share no base class below Exception
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NnslimError(f"{path}: not a loadable ONNX model ({reason})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) not in (1, 2) or len(outputs) != 1:
        raise NnslimError(
            f"{path}: not a filter (expected 1 or 2 inputs and 1 output, got {len(inputs)} and {len(outputs)})"
        )
    return session


def _feeds(session: ort.InferenceSession, luma: torch.Tensor, qp: torch.Tensor) -> dict[str, np.ndarray]:
    inputs = session.get_inputs()
    feeds = {inputs[0].name: np.ascontiguousarray(luma.numpy())}
    if len(inputs) == 2:
        feeds[inputs[1].name] = qp.numpy()
    return feeds


def onnx_max_difference(model: nn.Module, path: Path, height: int = 64, width: int = 96) -> float:
    """Largest absolute difference between a filter in PyTorch and its ONNX export in ONNX Runtime.

    Both run on the same seeded random batch of two frames (with QPs 37 and 32 for a filter that
    takes the QP), in float32.

    Args:
        model: The PyTorch filter.
        path: Its ONNX export.
        height: Frame height.
        width: Frame width.

    Returns:
        max |torch - onnxruntime| over every output sample.

    Raises:
        NnslimError: A missing, oversized or corrupt ONNX file, or outputs of different shapes.
    """
    session = onnx_session(path)
    luma, qp = _frames(2, height, width)
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = forward(model, luma.to(device), qp.to(device)).float().cpu().numpy()
    finally:
        model.train(was_training)
    (actual,) = session.run(None, _feeds(session, luma, qp))
    if actual.shape != expected.shape:
        raise NnslimError(f"{path}: ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))


def interleaved_ms(runs: dict[str, Callable[[], object]], repetitions: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Wall-clock times of several calls measured in turns (A, B, A, B, ...), so that a change of
    machine load or clock hits all of them alike.

    Args:
        runs: Name to a call that processes one frame.
        repetitions: Timed calls of each, at least 5 for a published figure.
        warmup: Untimed calls of each first.

    Returns:
        Per name, ``{"median_ms", "min_ms", "runs_ms": [...]}``.

    Raises:
        NnslimError: Fewer than one repetition or a negative warm-up.
    """
    if repetitions < 1:
        raise NnslimError(f"repetitions must be at least 1, not {repetitions}")
    if warmup < 0:
        raise NnslimError(f"warmup must be 0 or more, not {warmup}")
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: {"median_ms": statistics.median(ms), "min_ms": min(ms), "runs_ms": ms} for name, ms in times.items()}


def interleaved_frames(
    runners: dict[str, TileRunner],
    width: int = 1920,
    height: int = 1080,
    repetitions: int = 5,
    threads: int | None = None,
    tile: int = 256,
    overlap: int = 16,
    tiles: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Milliseconds per 8-bit luma frame of several tile runners, timed in turns on one frame.

    Every runner filters the same seeded frame as `nnslim filter` tiles it, one warm-up frame
    each, then ``repetitions`` rounds of one frame each, with the PyTorch thread count fixed
    for the measurement (give ONNX Runtime sessions the same ``threads``). ``tiles`` gives
    some runners another tile side than ``tile`` (a runtime's own, ``DEFAULT_TILES``).

    Returns:
        ``threads``, ``repetitions`` and, per runner, ``interleaved_ms``'s dict.
    """
    count = _threads(threads)
    plane = _plane(height, width)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with torch.inference_mode():
            timing = interleaved_ms(
                {name: _frame(run, plane, (tiles or {}).get(name, tile), overlap) for name, run in runners.items()},
                repetitions,
            )
    finally:
        torch.set_num_threads(previous)
    return {"threads": count, "repetitions": repetitions, **timing}


def _frame(run: TileRunner, plane: np.ndarray, tile: int, overlap: int) -> Callable[[], object]:
    """One frame through ``run`` as `nnslim filter` tiles it."""
    return lambda: run_tiles(run, plane, tile, overlap)


def _plane(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded random 8-bit luma plane."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)


def onnx_runner(session: ort.InferenceSession, qp: float = EXAMPLE_QP) -> TileRunner:
    """Run an exported filter on tiles in ONNX Runtime, with the QP for filters that take it."""
    qp_array = torch.tensor([float(qp)])

    def run(tile: torch.Tensor) -> torch.Tensor:
        (restored,) = session.run(None, _feeds(session, tile, qp_array))
        return torch.from_numpy(restored)

    return run


def torch_ms_per_frame(
    model: nn.Module,
    width: int = 1920,
    height: int = 1080,
    repetitions: int = 5,
    threads: int | None = None,
    tile: int = 256,
    overlap: int = 16,
) -> dict[str, Any]:
    """Milliseconds per 8-bit luma frame for a filter in PyTorch on the CPU, run as `nnslim filter` runs it.

    The frame goes through ``run_tiles`` with ``torch_runner`` (channels-last tiles, uint8 in
    and out) under ``torch.inference_mode``, with ``torch.set_num_threads`` set for the
    measurement and restored afterwards; one warm-up frame first.

    Args:
        model: The filter; a CPU copy in eval mode is timed.
        width: Frame width.
        height: Frame height.
        repetitions: Timed frames.
        threads: PyTorch intra-op threads; every core by default.
        tile: Tile side.
        overlap: Context pixels around each tile.

    Returns:
        ``{"median_ms", "min_ms", "runs_ms": [...]}`` over the timed frames.

    Raises:
        NnslimError: Bad thread or repetition counts.
    """
    run = torch_runner(copy.deepcopy(model).cpu().eval(), int(EXAMPLE_QP))
    return dict(interleaved_frames({"filter": run}, width, height, repetitions, threads, tile, overlap)["filter"])


def onnx_ms_per_frame(
    path: Path,
    width: int = 1920,
    height: int = 1080,
    repetitions: int = 5,
    threads: int | None = None,
    tile: int = 256,
    overlap: int = 16,
) -> dict[str, Any]:
    """Milliseconds per 8-bit luma frame for an exported filter in ONNX Runtime on the CPU.

    The same tiling as ``torch_ms_per_frame``, with ``onnx_runner``.

    Args:
        path: The ``.onnx`` file.
        width: Frame width.
        height: Frame height.
        repetitions: Timed frames, after one warm-up frame.
        threads: Intra-op threads; every core by default.
        tile: Tile side.
        overlap: Context pixels around each tile.

    Returns:
        ``{"median_ms", "min_ms", "runs_ms": [...]}`` over the timed frames.

    Raises:
        NnslimError: A missing or corrupt ONNX file, or bad thread or repetition counts.
    """
    run = onnx_runner(onnx_session(path, threads))
    return dict(interleaved_frames({"filter": run}, width, height, repetitions, threads, tile, overlap)["filter"])
