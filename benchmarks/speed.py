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

Run it on an otherwise idle machine: times are wall-clock, and all cores are used.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nnslim.bitstream.pack import unpack
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import (
    EXAMPLE_QP,
    export_onnx,
    interleaved_frames,
    onnx_max_difference,
    onnx_runner,
    onnx_session,
)
from nnslim.io import atomic_write_json, require_writable_file
from nnslim.models.apply import torch_runner
from nnslim.models.filters import kmac_per_pixel, parameter_count
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


def describe(path: Path, args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], Any, Any]:
    """One filter's size and complexity, and its PyTorch and ONNX Runtime frame runners."""
    model, meta, size = load(path, args.trust_factory)
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
    """Every filter's figures, its frames timed in turns with every other's in both runtimes."""
    rows, runners = [], {}
    for i, path in enumerate(paths):
        say(f"{path.name}: loading and exporting to ONNX")
        row, torch_run, onnx_run = describe(path, args, scratch)
        rows.append(row)
        runners |= {f"{i}|torch": torch_run, f"{i}|onnxruntime": onnx_run}
    say(f"timing {len(runners)} filter and runtime pairs in turns, {args.repetitions} frames each")
    timing = interleaved_frames(
        runners, args.width, args.height, args.repetitions, args.threads, args.tile, args.overlap
    )
    for name in runners:
        index, runtime = name.split("|")
        rows[int(index)][runtime] = timing[name]
    return rows


def versus(original: dict[str, Any], slim: dict[str, Any]) -> dict[str, float]:
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


def table(rows: list[dict[str, Any]], width: int, height: int) -> Table:
    result = Table(title=f"CPU ms per {width}x{height} luma frame (median), original first")
    columns = ("file", "params", "kMAC/px", "torch ms", "ORT ms", "max |diff|", "MAC reduction")
    for column in (*columns, "speedup torch", "speedup ORT", "closeness torch", "closeness ORT"):
        result.add_column(column, overflow="fold", no_wrap=column == "file")
    for r in rows:
        v = r.get("versus_original")
        result.add_row(
            Path(r["file"]).name,
            f"{r['parameters']:,}",
            f"{r['kmac_per_pixel']:.1f}",
            f"{r['torch']['median_ms']:.0f}",
            f"{r['onnxruntime']['median_ms']:.0f}",
            f"{r['onnx_max_difference']:.1e}",
            *(
                (
                    f"{v['mac_reduction']:.2f}x",
                    f"{v['speedup_torch']:.2f}x",
                    f"{v['speedup_onnxruntime']:.2f}x",
                    f"{v['closeness_torch']:.2f}",
                    f"{v['closeness_onnxruntime']:.2f}",
                )
                if v
                else ("-",) * 5
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
    parser.add_argument("--repetitions", type=int, default=5, help="timed frames per filter and runtime")
    parser.add_argument("--threads", type=int, help="threads for both runtimes (every core by default)")
    parser.add_argument("--trust-factory", metavar="FILE.py:FACTORY", help="build this user architecture, as nnslim")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "speed.json")
    args = parser.parse_args()
    console = Console() if sys.stdout.isatty() else Console(width=160)  # a piped table keeps one row per filter
    try:
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
    except NnslimError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    original, slim = rows[0], rows[1:]
    for r in slim:
        r["versus_original"] = versus(original, r)
    console.print(table(rows, args.width, args.height))
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
        "repetitions": args.repetitions,
        "warmup": 1,
        "threads": args.threads or os.cpu_count(),
        "statistic": "median",
    }
    atomic_write_json(args.json, {"config": config, "machine": machine, "original": original, "slim": slim})
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
