"""The MPEG-NNR style evaluation table: an original filter against its decoded `.nnsl` file, in one run.

Both filters are measured the same way on the same decoded frames: size, Y/U/V PSNR and gain
over the codec alone, BD-rate, complexity, CPU time per 1080p frame in PyTorch and ONNX
Runtime, and memory. The compressed filter is always the model decoded from the file.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from torch import nn

from nnslim.bitstream.pack import DEFAULT_MAX_PARAMS, unpack
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import (
    DEFAULT_TILES,
    EXAMPLE_QP,
    export_onnx,
    interleaved_frames,
    onnx_runner,
    onnx_runtime_of,
    onnx_session,
)
from nnslim.models.apply import filter_frames, run_tiles, torch_runner
from nnslim.models.assess import summarise
from nnslim.models.data import LumaPairs
from nnslim.models.filters import kmac_per_pixel, parameter_count
from nnslim.models.train import save_filter, validate_file
from nnslim.video.metrics import psnr_frames

MEMORY_PROBE = """
import json, sys
import numpy as np, torch
from pathlib import Path
from nnslim.models.apply import filter_plane
from nnslim.models.train import load_filter

def high_water_mib():
    # VmHWM starts afresh with the process image; ru_maxrss would carry the parent's peak over exec
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status")

torch.set_num_threads(int(sys.argv[4]))
model, meta = load_filter(Path(sys.argv[1]), sys.argv[5] or None)
plane = np.random.default_rng(0).integers(0, 256, (int(sys.argv[3]), int(sys.argv[2])), dtype=np.uint8)
idle = high_water_mib()
with torch.inference_mode():
    filter_plane(model, plane, (meta.get("training", {}).get("qps") or [37])[0])
print(json.dumps({"idle_rss_mib": idle, "peak_rss_mib": high_water_mib()}))
"""


@dataclass(frozen=True)
class EvaluateConfig:
    """How to measure runtime and memory, and what file to accept.

    Attributes:
        width: Frame width for runtime and memory.
        height: Frame height for runtime and memory.
        repetitions: Timed frames per filter and runtime.
        timing: Time the filters and measure their memory; without it, only size, quality and
            complexity are measured.
        threads: CPU threads for the runtimes (every core when None).
        max_params: The most parameters the file's filter may have (see ``container.Limits``).
    """

    width: int = 1920
    height: int = 1080
    repetitions: int = 5
    timing: bool = True
    threads: int | None = None
    max_params: int = DEFAULT_MAX_PARAMS


def frame_name(runtime: dict[str, Any]) -> str:
    """The frame size an evaluation's ``runtime`` was timed on: ``1080p``, or ``WxH`` for another size."""
    frame = runtime.get("frame", "1920x1080")
    return "1080p" if frame == "1920x1080" else str(frame)


@dataclass(frozen=True)
class Reference:
    """The original filter a file is measured against.

    Attributes:
        model: The original filter.
        meta: Its description.
        file: Its file.
        measured: Folder where its Y-PSNR on each sequence and QP is kept, keyed by the file's
            SHA-256 and the frames (``train.validate_file``): evaluating several files against
            one original filters the frames with it once.
    """

    model: nn.Module
    meta: dict[str, Any]
    file: Path
    measured: Path


def check_match(original_meta: dict[str, Any], description: dict[str, Any]) -> None:
    """Refuse a file whose filter was not made from ``original`` (another architecture or training).

    Raises:
        NnslimError: The architectures or the codec and QPs the filters were trained for differ.
    """
    theirs, ours = description.get("arch", {}), original_meta.get("arch", {})
    if theirs != ours:
        raise NnslimError(f"the file holds a {theirs.get('name')!r} filter {theirs}, the original is {ours}")
    for key in ("codec", "qps"):
        mine, other = original_meta.get("training", {}).get(key), description.get("training", {}).get(key)
        if mine != other:
            raise NnslimError(f"the file's filter was trained for {key} {other}, the original for {mine}")


def memory(
    model: nn.Module,
    meta: dict[str, Any],
    width: int,
    height: int,
    threads: int,
    trusted_factory: str | None = None,
) -> dict[str, float]:
    """Peak resident memory of a fresh process that loads the filter and filters one frame (MiB).

    Read from Linux's ``VmHWM``. ``idle_rss_mib`` is the high-water mark after loading Python,
    PyTorch, the model and the frame, so the peak minus it is what filtering added. The process
    builds the filter's user architecture only if it is ``trusted_factory``.
    """
    with tempfile.TemporaryDirectory(prefix="nnslim-memory-") as scratch:
        path = Path(scratch) / "filter.pt"
        save_filter(model, path, meta)
        argv = [sys.executable, "-c", MEMORY_PROBE, str(path), str(width), str(height), str(threads)]
        argv.append(trusted_factory or "")
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NnslimError(f"the memory probe failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


PairScore = Callable[[LumaPairs], float]
"""The mean Y-PSNR of a filter's output on a pair's frames."""


def _torch_score(model: nn.Module) -> PairScore:
    return lambda pair: float(np.mean(psnr_frames(pair.original, filter_frames(model, pair.decoded, pair.qp))))


def _onnx_score(session: ort.InferenceSession, tile: int) -> PairScore:
    def score(pair: LumaPairs) -> float:
        planes = np.stack([run_tiles(onnx_runner(session, pair.qp), plane, tile) for plane in pair.decoded])
        return float(np.mean(psnr_frames(pair.original, planes)))

    return score


def _reference_score(reference: Reference) -> PairScore:
    """The original's score, measured once per file and frames (as ``_torch_score`` measures it)."""

    def score(pair: LumaPairs) -> float:
        kept = validate_file(reference.file, reference.model, [pair], 1, reference.measured, DEFAULT_TILES["torch"])
        return kept["psnr_y_filtered"]

    return score


def _quality(
    models: dict[str, PairScore], pairs: list[LumaPairs], on_step: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per sequence and QP: kbps, Y/U/V PSNR of the codec, and Y-PSNR after each filter."""
    rows = []
    for pair in pairs:
        out = {
            "sequence": pair.name,
            "qp": pair.qp,
            "kbps": pair.kbps,
            "psnr_y_codec": float(np.mean(psnr_frames(pair.original, pair.decoded))),
            "psnr_u_codec": pair.psnr_uv[0],
            "psnr_v_codec": pair.psnr_uv[1],
        }
        for name, score in models.items():
            on_step(f"{pair.name} QP {pair.qp}: {name} filter")
            out[f"psnr_y_{name}"] = score(pair)
        rows.append(out)
    return rows


def _per_filter(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """``summarise`` of one filter's rows (gain and BD-rate against the codec alone)."""
    return summarise(
        [
            {
                "sequence": r["sequence"],
                "qp": r["qp"],
                "kbps": r["kbps"],
                "psnr_y_codec": r["psnr_y_codec"],
                "psnr_y_filtered": r[f"psnr_y_{name}"],
                "gain_db": r[f"psnr_y_{name}"] - r["psnr_y_codec"],
            }
            for r in rows
        ]
    )


def _table(
    original: nn.Module,
    filters: dict[str, PairScore],
    file_bytes: int,
    pairs: list[LumaPairs],
    on_step: Callable[[str], None],
) -> dict[str, Any]:
    """The table's size, performance and the original's complexity; runtime and memory left empty."""
    rows = _quality(filters, pairs, on_step)
    summaries = {name: _per_filter(rows, name) for name in filters}
    size: dict[str, float] = {"original_fp32_bytes": 4 * parameter_count(original), "compressed_bytes": file_bytes}
    size["ratio"] = size["original_fp32_bytes"] / size["compressed_bytes"]
    return {
        "size": size,
        "performance": {
            "rows": rows,
            **{name: {"per_sequence": s["per_sequence"], "mean": s["mean"]} for name, s in summaries.items()},
            "loss_db": summaries["original"]["mean"]["gain_db"] - summaries["reconstructed"]["mean"]["gain_db"],
        },
        "complexity": {
            "original": {"parameters": parameter_count(original), "kmac_per_pixel": kmac_per_pixel(original)}
        },
        "runtime": {},
        "memory": {},
    }


def evaluate_onnx(
    reference: Reference,
    path: Path,
    pairs: list[LumaPairs],
    config: EvaluateConfig,
    on_step: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The evaluation table of the original filter (PyTorch) and an ONNX model of it in ONNX Runtime.

    The ONNX model (``nnslim deploy``'s int8 model, or a float32 export) runs in its own runtime
    (``runtime.onnx_runtime_of``) on the same frames, and both are timed in turns on one 1080p
    frame. Complexity and memory are the original's only: the ONNX model's are not measured.

    Returns:
        ``evaluate``'s keys; ``runtime`` has the original's ``torch_ms``, the model's
        ``{RUNTIME}_ms`` and ``speedup_vs_torch_fp32`` (the original in PyTorch over the model).

    Raises:
        NnslimError: A file that is not a loadable ONNX filter.
    """
    on_step(f"loading {path.name} in ONNX Runtime")
    where = onnx_runtime_of(path)
    session = onnx_session(path, config.threads)
    original = reference.model.eval()
    filters = {"original": _reference_score(reference), "reconstructed": _onnx_score(session, DEFAULT_TILES[where])}
    result = _table(original, filters, path.stat().st_size, pairs, on_step)
    if not config.timing:
        return result
    on_step(f"timing the original in PyTorch and the model in {where}, in turns")
    runners = {"original": torch_runner(original, int(EXAMPLE_QP)), "reconstructed": onnx_runner(session)}
    tiles = {"original": DEFAULT_TILES["torch"], "reconstructed": DEFAULT_TILES[where]}
    timing = interleaved_frames(runners, config.width, config.height, config.repetitions, config.threads, tiles=tiles)
    original_ms, model_ms = timing["original"]["median_ms"], timing["reconstructed"]["median_ms"]
    result["runtime"] = {
        "original": {"torch_ms": original_ms}, "reconstructed": {f"{where}_ms": model_ms}, "runtime": where,
        "tiles": tiles, "frame": f"{config.width}x{config.height}",
        "threads": timing["threads"], "repetitions": timing["repetitions"],
        "speedup_vs_torch_fp32": original_ms / model_ms if model_ms > 0 else math.nan,
    }  # fmt: skip
    return result


def _runtimes(models: dict[str, nn.Module], config: EvaluateConfig, on_step: Callable[[str], None]) -> dict[str, Any]:
    """Each filter's ms per frame in PyTorch and ONNX Runtime, timed in turns, and the speedups."""
    with tempfile.TemporaryDirectory(prefix="nnslim-evaluate-") as scratch:
        runners = {}
        for name, model in models.items():
            onnx_path = export_onnx(model, Path(scratch) / f"{name}.onnx")
            runners[f"{name}|torch_ms"] = torch_runner(model, int(EXAMPLE_QP))
            runners[f"{name}|onnxruntime_ms"] = onnx_runner(onnx_session(onnx_path, config.threads))
        on_step("timing both filters in both runtimes, in turns")
        timing = interleaved_frames(runners, config.width, config.height, config.repetitions, config.threads)
    runtime: dict[str, Any] = {
        name: {key: timing[f"{name}|{key}"]["median_ms"] for key in ("torch_ms", "onnxruntime_ms")} for name in models
    }
    runtime["threads"], runtime["repetitions"] = timing["threads"], timing["repetitions"]
    runtime["frame"] = f"{config.width}x{config.height}"
    for key in ("torch_ms", "onnxruntime_ms"):
        slow, fast = runtime["original"][key], runtime["reconstructed"][key]
        runtime[f"speedup_{key.removesuffix('_ms')}"] = slow / fast if fast > 0 else math.nan
    return runtime


def evaluate(
    reference: Reference,
    packed: bytes,
    pairs: list[LumaPairs],
    config: EvaluateConfig,
    on_step: Callable[[str], None] = lambda _: None,
    trusted_factory: str | None = None,
) -> dict[str, Any]:
    """The evaluation table of the original filter and its `.nnsl` file, all measured here.

    Args:
        reference: The uncompressed filter.
        packed: The `.nnsl` file's bytes; the compressed filter is what they decode to.
        pairs: Decoded and original frames of held-out sequences (see ``models.splits``).
        config: Runtime settings.
        on_step: Progress labels.
        trusted_factory: The user architecture (``file.py:factory``) the file may name; a file
            naming any other user factory is refused (see ``unpack``).

    Returns:
        ``size``, ``performance`` (rows per sequence and QP, per-sequence and mean gains and
        BD-rates of both filters), ``complexity``, ``runtime`` and ``memory``, each with
        ``original`` and ``reconstructed`` sides (``runtime`` and ``memory`` empty without
        ``config.timing``).

    Raises:
        NnslimError: A corrupt file, an untrusted user factory, or a file that does not hold a
            filter made from ``original``.
    """
    on_step("decoding the file")
    reconstructed, description = unpack(packed, trusted_factory=trusted_factory, max_params=config.max_params)
    check_match(reference.meta, description)
    original = reference.model.eval()
    models = {"original": original, "reconstructed": reconstructed}
    scores = {"original": _reference_score(reference), "reconstructed": _torch_score(reconstructed)}
    result = _table(original, scores, len(packed), pairs, on_step)
    result["complexity"]["reconstructed"] = {
        "parameters": parameter_count(reconstructed), "kmac_per_pixel": kmac_per_pixel(reconstructed)
    }  # fmt: skip
    if config.timing:
        result["runtime"] = _runtimes(models, config, on_step)
        for name, model in models.items():
            on_step(f"memory of the {name} filter")
            meta = reference.meta if name == "original" else {**description, "format": "nnslim-filter"}
            threads = config.threads or os.cpu_count() or 1
            result["memory"][name] = {
                **memory(model, meta, config.width, config.height, threads, trusted_factory),
                "parameter_bytes": 4 * parameter_count(model),
            }
    return result
