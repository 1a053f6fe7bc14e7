"""How fast filters and single layers run in each runtime, timed in turns: what a ``speed`` recipe decides by.

Every timing is ``interleaved_ms``: one warm-up call each, then at least five rounds in which
each model runs once, the thread count fixed; the median is reported. A filter runs a 1920x1080
frame as `nnslim filter` tiles it in that runtime (``DEFAULT_TILES``). For ``onnxruntime_int8``,
each model is quantized as ``deploy`` quantizes it (calibrated on training tiles, nodes without
an int8 operator left float), without the loss check: the timing is what matters here.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from nnslim.compress.context import Speed
from nnslim.deploy.calibration import Feed, tile_feeds
from nnslim.deploy.graph import pre_process, prepare, unsupported_nodes
from nnslim.deploy.quantize import Quantizer
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import (
    DEFAULT_TILES,
    EXAMPLE_QP,
    check_runtime,
    export_onnx,
    interleaved_frames,
    interleaved_ms,
    onnx_runner,
    onnx_session,
)
from nnslim.models.apply import TileRunner, torch_runner
from nnslim.models.data import LumaPairs
from nnslim.models.filters import takes_qp

REPETITIONS = 5
CALIBRATION_TILES = 16
CALIBRATION_SIDE = 128


def _int8(prepared: Path, folder: Path, feeds: Sequence[Feed], threads: int | None, keep_float: list[str]) -> Path:
    # min-max: the fastest calibration, and the ranges do not change the speed being measured
    return Quantizer(prepared, folder, feeds, "minmax", threads).quantize(keep_float, folder / "int8.onnx")


def _filter_runner(
    model: nn.Module, runtime: str, folder: Path, calibration: Sequence[LumaPairs], threads: int | None
) -> TileRunner:
    """A tile runner for the filter in ``runtime`` (files it needs are written to ``folder``)."""
    model = copy.deepcopy(model).cpu().eval()
    if runtime == "torch":
        return torch_runner(model, int(EXAMPLE_QP))
    if runtime == "onnxruntime":
        return onnx_runner(onnx_session(export_onnx(model, folder / "float.onnx"), threads))
    prepared = prepare(model, folder)
    feeds = tile_feeds(calibration, CALIBRATION_TILES, CALIBRATION_SIDE, 0, takes_qp(model))
    unsupported = [n.name for n in unsupported_nodes(onnx.load(prepared))]
    return onnx_runner(onnx_session(_int8(prepared, folder, feeds, threads, unsupported), threads))


def frame_timing(
    models: dict[str, nn.Module], runtime: str, calibration: Sequence[LumaPairs], threads: int | None = None
) -> dict[str, Any]:
    """Milliseconds per 1920x1080 frame of each filter in ``runtime``, timed in turns.

    Args:
        models: The filters by name.
        runtime: One of ``RUNTIMES``.
        calibration: Training frames to calibrate int8 models on (only ``onnxruntime_int8`` reads them).
        threads: Threads of PyTorch and ONNX Runtime (every core when None).

    Returns:
        ``interleaved_frames``' dict (``threads``, ``repetitions`` and each name's times) with ``runtime``.

    Raises:
        NnslimError: An unknown runtime, or a filter that does not export or quantize.
    """
    check_runtime(runtime)
    with tempfile.TemporaryDirectory(prefix="nnslim-speed-") as scratch:
        runners: dict[str, TileRunner] = {}
        for name, model in models.items():
            folder = Path(scratch) / str(len(runners))
            folder.mkdir()
            runners[name] = _filter_runner(model, runtime, folder, calibration, threads)
        timing = interleaved_frames(runners, repetitions=REPETITIONS, threads=threads, tile=DEFAULT_TILES[runtime])
    return {"runtime": runtime, **timing}


def frame_speeds(
    models: Sequence[nn.Module], runtime: str, calibration: Sequence[LumaPairs], threads: int | None = None
) -> list[tuple[float, float]]:
    """Median and fastest milliseconds per 1920x1080 frame of each filter in ``runtime`` (``frame_timing``)."""
    timing = frame_timing({str(i): m for i, m in enumerate(models)}, runtime, calibration, threads)
    return [(float(timing[str(i)]["median_ms"]), float(timing[str(i)]["min_ms"])) for i in range(len(models))]


def _export_layer(layer: nn.Module, x: torch.Tensor, path: Path) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
            torch.onnx.export(layer, (x,), path, input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    except torch.onnx.errors.OnnxExporterError as exc:
        raise NnslimError(f"cannot export {type(layer).__name__} to ONNX: {exc}") from None
    return path


def _layer_call(
    layer: nn.Module, x: torch.Tensor, runtime: str, folder: Path, threads: int | None
) -> Callable[[], object]:
    layer = copy.deepcopy(layer).cpu().eval()
    if runtime == "torch":
        return lambda: layer(x)
    path = _export_layer(layer, x, folder / "layer.onnx")
    if runtime == "onnxruntime_int8":
        prepared = pre_process(path, folder / "prepared.onnx", type(layer).__name__)  # as deploy prepares a filter
        path = _int8(prepared, folder, [{"x": x.numpy()}], threads, [])
    session = onnx_session(path, threads)
    feed = {"x": np.ascontiguousarray(x.numpy())}
    return lambda: session.run(None, feed)


def layer_speeds(
    layers: Sequence[nn.Module], shape: tuple[int, int, int, int], runtime: str, threads: int | None = None
) -> list[float]:
    """Median milliseconds per call of each layer on one seeded input of ``shape`` in ``runtime``, timed in turns.

    Raises:
        NnslimError: An unknown runtime, or a layer that does not export.
    """
    check_runtime(runtime)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="nnslim-speed-") as scratch, torch.inference_mode():
            calls = {}
            for index, layer in enumerate(layers):
                folder = Path(scratch) / str(index)
                folder.mkdir()
                calls[str(index)] = _layer_call(layer, x, runtime, folder, threads)
            timing = interleaved_ms(calls, REPETITIONS)
    finally:
        torch.set_num_threads(previous)
    return [float(timing[str(i)]["median_ms"]) for i in range(len(layers))]


def speed_in(runtime: str, calibration: Sequence[LumaPairs], threads: int | None = None) -> Speed:
    """A ``Speed`` for compression runs: ``frame_speeds`` and ``layer_speeds`` in ``runtime``.

    Raises:
        NnslimError: An unknown runtime.
    """
    check_runtime(runtime)
    pairs = list(calibration)
    return Speed(
        runtime,
        lambda models: frame_speeds(models, runtime, pairs, threads),
        lambda layers, shape: layer_speeds(layers, shape, runtime, threads),
    )
