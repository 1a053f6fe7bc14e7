"""CPU speed of a filter and its slim versions, in PyTorch and ONNX Runtime, in one run.

For the original filter and each slim one (filter files: ``X.pt`` with ``X.json`` beside it, or
``.nnsl`` files, decoded as a decoder would), measures parameters, kMAC per pixel, and
milliseconds per 8-bit luma frame (1920x1080 by default, median of the repetitions after one
warm-up frame each; every filter and runtime is timed in turns, one frame each round, so that
a change of load hits all alike; the thread count is fixed and recorded) in PyTorch and in ONNX Runtime,
plus the largest difference between the two. A frame is filtered as `nnslim filter` filters it:
256-pixel tiles with 16 pixels of context (``--tile``, ``--overlap``), uint8 in and out. For each slim
filter it gives the speedup against the original in both runtimes, the MAC reduction
(original kMAC / slim kMAC) and closeness = speedup / MAC reduction (1 means time fell as much
as the MAC count). Prints the table and writes benchmarks/results/speed.json.

    .venv/bin/python benchmarks/speed.py [--original models/postfilter_x265_qp37.pt] [--slim FILE.pt ...]

Each slim filter is also deployed as an int8 QDQ model (``nnslim deploy``'s ``deploy_model``:
calibrated on the original's training sequences, its loss bounded on validation within
``--max-loss`` against the original, nodes kept float where needed, ``--qat-steps`` of
quantization-aware fine-tuning first), or taken as ``nnslim deploy`` wrote it (``--int8``, one
per slim filter), and timed in ONNX Runtime
(``onnxruntime_int8``) on its own tiling (a whole frame, ``--int8-tile``), and on the float
runtimes' tiles too (``onnxruntime_int8_on_tiles``), so that the tiling's share is seen.
The original's int8 row is the peer, what a user would do without nnslim: ONNX Runtime's
pre-processing and ``quantize_static`` with its default (min-max) calibration, on the same
training tiles, no budget and no graph rewrite. For each slim filter, ``speedup_vs_torch_fp32``
maps every runtime to the original in PyTorch over the slim filter in it, and ``loss_db_test``
is its int8 model's Y-PSNR loss against the original fp32 filter on the test split (first ``--frames`` frames of each
sequence up to 416x240, at the filter's QPs). ``reference`` times one 64-to-64 3x3
convolution on a 960x540 input in each runtime, and each row's ``gmacs`` (GMAC per second of
its nominal kMAC/pixel over the frame) is given as a share of that.

Run it on an otherwise idle machine: times are wall-clock, and all cores are used.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from rich.console import Console
from rich.table import Table
from torch import nn

from nnslim.bitstream.pack import unpack
from nnslim.deploy.calibration import FeedReader, tile_feeds
from nnslim.deploy.loss import mean_psnr_y
from nnslim.deploy.qat import QatConfig
from nnslim.deploy.quantize import DeployConfig, deploy_model
from nnslim.deploy.speed import layer_speeds
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import (
    DEFAULT_TILES,
    EXAMPLE_QP,
    RUNTIMES,
    export_onnx,
    interleaved_frames,
    onnx_max_difference,
    onnx_runner,
    onnx_session,
)
from nnslim.io import atomic_write_json, require_writable_file
from nnslim.models.apply import torch_runner
from nnslim.models.data import LumaPairs
from nnslim.models.filters import kmac_per_pixel, parameter_count, takes_qp
from nnslim.models.splits import Splits, splits_for
from nnslim.models.train import load_filter


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info(threads: int | None) -> dict[str, Any]:
    """What the times were measured on."""
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": threads or os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "load_average_at_start": _load_average(),
    }


def load(path: Path, trusted_factory: str | None) -> tuple[nn.Module, dict[str, Any], int]:
    """A filter file (``X.pt``), or the filter decoded from an ``.nnsl`` file; and the bytes it ships in."""
    if path.suffix == ".nnsl":
        data = path.read_bytes() if path.is_file() else None
        if data is None:
            raise NnslimError(f"{path}: no such file")
        model, meta = unpack(data, trusted_factory)
        return model, meta, len(data)
    model, meta = load_filter(path, trusted_factory)
    return model, meta, path.stat().st_size


def deploy_int8(model: nn.Module, splits: Splits, against: nn.Module, args: argparse.Namespace, scratch: Path) -> Path:
    """A slim filter as an int8 model in ONNX Runtime (``deploy_model``, loss against the original), in ``scratch``."""
    config = DeployConfig(
        max_loss_db=args.max_loss, float_fallback=True, threads=args.threads, qat=QatConfig(steps=args.qat_steps)
    )
    deployment = deploy_model(model, splits.pairs("train"), splits.pairs("validation"), config, against=against)
    path = scratch / f"int8_{len(list(scratch.glob('int8_*')))}.onnx"
    path.write_bytes(deployment.chosen.data)
    return path


def peer_int8(model: nn.Module, splits: Splits, scratch: Path) -> Path:
    """The original as a user would quantize it without nnslim: ONNX Runtime's pre-processing and
    ``quantize_static`` with its defaults (min-max), QDQ, per-channel, on the same calibration tiles."""
    exported = export_onnx(model, scratch / "peer_float.onnx")
    prepared, int8 = scratch / "peer_prepared.onnx", scratch / "peer_int8.onnx"
    quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
    config = DeployConfig()
    feeds = tile_feeds(splits.pairs("train"), config.calibration_tiles, config.tile, config.seed, takes_qp(model))
    quantize_static(str(prepared), str(int8), FeedReader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    return int8


def loss_db_test(original: nn.Module, int8: Path, pairs: list[LumaPairs], threads: int | None) -> float:
    """The int8 model's mean Y-PSNR loss against the original fp32 filter on the test pairs."""
    session = onnx_session(int8, threads)
    fp32 = mean_psnr_y(lambda qp: torch_runner(original, qp), pairs, 1)
    return fp32 - mean_psnr_y(lambda qp: onnx_runner(session, qp), pairs, 1)


def describe(
    path: Path, loaded: tuple[nn.Module, dict[str, Any], int], args: argparse.Namespace, scratch: Path
) -> tuple[dict[str, Any], Any, Any]:
    """One filter's size and complexity (``load``'s), and its PyTorch and ONNX Runtime frame runners."""
    model, meta, size = loaded
    onnx_path = export_onnx(model, scratch / f"{path.name}.onnx")
    row = {
        "file": str(path),
        "file_bytes": size,
        "arch": meta["arch"],
        "changed_layers": sorted(meta.get("layers", {})),
        "parameters": parameter_count(model),
        "kmac_per_pixel": kmac_per_pixel(model),
        "onnx_bytes": onnx_path.stat().st_size,
        "onnx_max_difference": onnx_max_difference(model, onnx_path),
    }
    return row, torch_runner(model.eval(), int(EXAMPLE_QP)), onnx_runner(onnx_session(onnx_path, args.threads))


def measure(paths: list[Path], args: argparse.Namespace, scratch: Path, say: Any) -> list[dict[str, Any]]:
    """Every filter's figures, its frames timed in turns with every other's in every runtime."""
    rows: list[dict[str, Any]] = []
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    loaded = [load(path, args.trust_factory) for path in paths]
    original, meta, _ = loaded[0]
    splits = splits_for(meta, args.sequences, (416, 240), args.frames, cache=args.cache)
    test = splits.pairs("test", say)
    for i, path in enumerate(paths):
        say(f"{path.name}: exporting to ONNX and deploying in int8")
        row, torch_run, onnx_run = describe(path, loaded[i], args, scratch)
        model = loaded[i][0]
        if i == 0:
            int8 = peer_int8(model, splits, scratch)
        else:
            int8 = args.int8[i - 1] if args.int8 else deploy_int8(model, splits, original, args, scratch)
        say(f"{path.name}: int8 loss on test")
        row |= {
            "int8_onnx_bytes": int8.stat().st_size,
            "loss_db_test": loss_db_test(original, int8, test, args.threads),
        }
        row["int8"] = "ONNX Runtime quantize_static alone (the peer)" if i == 0 else f"nnslim deploy ({int8.name})"
        rows.append(row)
        runners |= {f"{i}|torch": torch_run, f"{i}|onnxruntime": onnx_run}
        runners[f"{i}|onnxruntime_int8"] = onnx_runner(onnx_session(int8, args.threads))
        runners[f"{i}|onnxruntime_int8_on_tiles"] = runners[f"{i}|onnxruntime_int8"]
    say(f"timing {len(runners)} filter and runtime pairs in turns, {args.repetitions} frames each")
    tiles = {name: args.int8_tile for name in runners if name.endswith("|onnxruntime_int8")}
    timing = interleaved_frames(
        runners, args.width, args.height, args.repetitions, args.threads, args.tile, args.overlap, tiles
    )
    for name in runners:
        index, runtime = name.split("|")
        rows[int(index)][runtime] = timing[name]
    return rows


def versus(original: dict[str, Any], slim: dict[str, Any]) -> dict[str, Any]:
    """Speedups of a slim filter over the original, against its MAC reduction."""
    mac_reduction = original["kmac_per_pixel"] / slim["kmac_per_pixel"]
    speedup_torch = original["torch"]["median_ms"] / slim["torch"]["median_ms"]
    speedup_onnx = original["onnxruntime"]["median_ms"] / slim["onnxruntime"]["median_ms"]
    return {
        "mac_reduction": mac_reduction,
        "speedup_torch": speedup_torch,
        "speedup_onnxruntime": speedup_onnx,
        "closeness_torch": speedup_torch / mac_reduction,
        "closeness_onnxruntime": speedup_onnx / mac_reduction,
    }


def speedup_vs_torch_fp32(original: dict[str, Any], row: dict[str, Any]) -> dict[str, float]:
    """The original in PyTorch (float32) over this filter in each runtime."""
    return {runtime: original["torch"]["median_ms"] / row[runtime]["median_ms"] for runtime in RUNTIMES}


def reference_gmacs(args: argparse.Namespace) -> dict[str, float]:
    """GMAC per second of one 64-to-64 3x3 convolution on a 960x540 input, in each runtime (``layer_speeds``)."""
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    gmac = 64 * 64 * 9 * 540 * 960 / 1e9
    return {
        runtime: gmac / (layer_speeds([conv], (1, 64, 540, 960), runtime, args.threads)[0] / 1000)
        for runtime in RUNTIMES
    }


def gmacs(row: dict[str, Any], width: int, height: int, reference: dict[str, float]) -> dict[str, Any]:
    """A filter's GMAC/s in each runtime (nominal kMAC/pixel over the frame), and as a share of the reference's."""
    rates = {r: row["kmac_per_pixel"] * width * height / 1e6 / (row[r]["median_ms"] / 1000) for r in RUNTIMES}
    return {"gmacs": rates, "share_of_reference": {r: rates[r] / reference[r] for r in RUNTIMES}}


def table(rows: list[dict[str, Any]], width: int, height: int) -> Table:
    result = Table(title=f"CPU ms per {width}x{height} luma frame (median), original first")
    columns = ("file", "params", "kMAC/px", "torch ms", "ORT ms", "ORT int8 ms", "int8 loss dB", "MAC reduction")
    for column in (*columns, "vs torch fp32: torch", "ORT", "ORT int8", "closeness torch", "closeness ORT"):
        result.add_column(column, overflow="fold", no_wrap=column == "file")
    for r in rows:
        v, s = r.get("versus_original"), r.get("speedup_vs_torch_fp32")
        result.add_row(
            Path(r["file"]).name,
            f"{r['parameters']:,}",
            f"{r['kmac_per_pixel']:.1f}",
            *(f"{r[runtime]['median_ms']:.0f}" for runtime in RUNTIMES),
            f"{r['loss_db_test']:+.3f}",
            *(
                (
                    f"{v['mac_reduction']:.2f}x",
                    *(f"{s[runtime]:.2f}x" for runtime in RUNTIMES),
                    f"{v['closeness_torch']:.2f}",
                    f"{v['closeness_onnxruntime']:.2f}",
                )
                if v and s
                else ("-",) * 6
            ),
        )
    return result


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("models/postfilter_x265_qp37.pt"))
    parser.add_argument(
        "--slim", type=Path, nargs="+", action="extend", default=[], help="slim filter files (repeatable)"
    )
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--tile", type=int, default=256, help="tile side, as in nnslim filter")
    parser.add_argument("--overlap", type=int, default=16, help="context pixels around each tile")
    parser.add_argument(
        "--int8-tile", type=int, default=DEFAULT_TILES["onnxruntime_int8"], help="tile side of the int8 models"
    )
    parser.add_argument("--repetitions", type=int, default=5, help="timed frames per filter and runtime")
    parser.add_argument("--threads", type=int, help="threads for both runtimes (every core by default)")
    parser.add_argument("--trust-factory", metavar="FILE.py:FACTORY", help="build this user architecture, as nnslim")
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="for calibration and loss")
    parser.add_argument("--frames", type=int, default=16, help="first frames of each sequence for the int8 loss")
    parser.add_argument("--max-loss", type=float, default=0.05, help="int8 loss budget (dB) on validation")
    parser.add_argument("--qat-steps", type=int, default=0, help="deploy's --qat-steps for the slim filters")
    parser.add_argument(
        "--int8",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="the slim filters' int8 models from nnslim deploy, one per --slim in order, timed instead of deploying",
    )
    parser.add_argument("--cache", type=Path, help="encode cache")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = parser.parse_args()
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a piped table keeps one row per filter
    try:
        if args.int8 and len(args.int8) != len(args.slim):
            raise NnslimError(f"--int8 gives {len(args.int8)} models for {len(args.slim)} slim filters")
        if min(args.width, args.height, args.repetitions, args.tile) < 1 or args.overlap < 0:
            raise NnslimError("--width, --height, --tile and --repetitions must be at least 1, --overlap at least 0")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        require_writable_file(args.json)
        paths = [args.original, *args.slim]
        machine = machine_info(args.threads)
        with (
            tempfile.TemporaryDirectory(prefix="nnslim-speed-") as scratch,
            console.status("starting") as status,
        ):
            rows = measure(paths, args, Path(scratch), status.update)
            status.update("timing the reference convolution")
            reference = reference_gmacs(args)
    except NnslimError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    original, slim = rows[0], rows[1:]
    for r in rows:
        r |= gmacs(r, args.width, args.height, reference)
    for r in slim:
        r["versus_original"] = versus(original, r)
        r["speedup_vs_torch_fp32"] = speedup_vs_torch_fp32(original, r)
    console.print(table(rows, args.width, args.height))
    console.print(
        "reference 64-to-64 3x3 convolution, GMAC/s: " + ", ".join(f"{k} {v:.0f}" for k, v in reference.items())
    )
    console.print(
        f"{machine['cpu']} ({machine['cpu_count']} cores, {machine['threads']} threads), torch {machine['torch']}, "
        f"onnxruntime {machine['onnxruntime']}; load average at start {machine['load_average_at_start']}"
    )
    machine["load_average_at_end"] = _load_average()
    config = {
        "width": args.width,
        "height": args.height,
        "tile": args.tile,
        "overlap": args.overlap,
        "int8_tile": args.int8_tile,
        "repetitions": args.repetitions,
        "warmup": 1,
        "threads": args.threads or os.cpu_count(),
        "statistic": "median",
    }
    config |= {"frames": args.frames, "max_loss_db": args.max_loss, "sequences": str(args.sequences)}
    document = {"config": config, "machine": machine, "reference_gmacs": reference, "original": original, "slim": slim}
    atomic_write_json(args.json, document)
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
