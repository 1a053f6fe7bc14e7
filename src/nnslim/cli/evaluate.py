"""Commands that measure and report: evaluate, demo, report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from nnslim.cli.common import (
    Subparsers,
    add_json,
    add_limit,
    add_selection,
    add_trust,
    console,
    fmt,
    int_list,
    name_list,
    spinner,
)
from nnslim.errors import NnslimError
from nnslim.evaluate.measure import EvaluateConfig, frame_name
from nnslim.evaluate.runtime import RUNTIMES
from nnslim.jobs import demo, evaluate
from nnslim.jobs.common import Progress


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    if args.split != "test":
        raise NnslimError(f"evaluate measures on held-out sequences: use --split test, not {args.split!r}")
    measure = EvaluateConfig(
        repetitions=args.repetitions, timing=not args.no_timing, threads=args.threads, max_params=args.max_params
    )
    request = evaluate.EvaluateRequest(
        args.original, args.file, args.sequences, name_list(args.names), args.max_size, args.codec,
        int_list(args.qps) if args.qps else (), args.frames, measure, args.cache, args.store, args.trust_factory,
        args.update, args.runtime,
    )  # fmt: skip
    with spinner("evaluating") as progress:
        result = evaluate.evaluate_file(request, progress)
    if "adapted" in result.table:
        for p in [*result.table["adapted"]["per_sequence"], {"sequence": "mean", **result.table["adapted"]["mean"]}]:
            console.print(
                f"{p['sequence']} with its update: BD-rate {fmt(p['bd_rate_adapted'], 2, signed=True)}% against the "
                f"codec, {fmt(p['bd_rate_adapted_vs_base'], 2, signed=True)}% against the file's filter (bits counted)"
            )
    print_evaluation(result.table)
    console.print(f"stored as run {result.run_id}")
    return result.to_json()


def print_evaluation(table: dict[str, Any]) -> None:
    """The evaluation table: the original filter against the one decoded from the file."""
    perf, size = table["performance"], table["size"]
    out = Table(title="evaluation: original filter (O) against the filter decoded from the file (R)")
    for column in ("measure", "original", "reconstructed"):
        out.add_column(column, justify="left" if column == "measure" else "right")

    def both(label: str, get: Any, fmt: str) -> None:
        values = [get(side) for side in ("original", "reconstructed")]
        out.add_row(label, *("n/a" if isinstance(v, float) and math.isnan(v) else format(v, fmt) for v in values))

    out.add_row("size (bytes)", f"{size['original_fp32_bytes']:,} fp32", f"{size['compressed_bytes']:,} file")
    both("gain over codec (Y dB)", lambda s: perf[s]["mean"]["gain_db"], "+.3f")
    both("BD-rate vs codec (needs 4 QPs)", lambda s: perf[s]["mean"]["bd_rate"], "+.2f")
    both("parameters", lambda s: table["complexity"].get(s, {}).get("parameters", math.nan), ",")
    both("kMAC per pixel", lambda s: table["complexity"].get(s, {}).get("kmac_per_pixel", math.nan), ".1f")
    frame = frame_name(table["runtime"])
    for runtime in RUNTIMES:
        key = f"{runtime}_ms"
        if any(key in table["runtime"].get(side, {}) for side in ("original", "reconstructed")):
            both(f"{runtime} ms per {frame} frame", lambda s, k=key: table["runtime"][s].get(k, math.nan), ".0f")
    both(
        f"peak memory filtering {frame} (MiB)",
        lambda s: table["memory"].get(s, {}).get("peak_rss_mib", math.nan),
        ".0f",
    )
    both("parameter memory (bytes)", lambda s: table["memory"].get(s, {}).get("parameter_bytes", math.nan), ",")
    console.print(out)
    runtime = table["runtime"]
    speedups = (
        [f"{runtime['speedup_vs_torch_fp32']:.2f}x in {runtime['runtime']} over the original in PyTorch"]
        if "speedup_vs_torch_fp32" in runtime
        else [f"{runtime['speedup_torch']:.2f}x PyTorch", f"{runtime['speedup_onnxruntime']:.2f}x ONNX Runtime"]
        if runtime
        else ["not timed"]
    )
    console.print(
        f"size ratio {size['ratio']:.1f}x; Y-PSNR loss {perf['loss_db']:+.3f} dB; speedup {', '.join(speedups)}"
    )


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    mode = "quick" if args.quick else "full" if args.full else "default"
    request = demo.DemoRequest(args.out, args.sequences, args.model, args.shipped, mode, args.store, args.trust_factory)
    with console.status("demo") as status:
        result = demo.demo(request, Progress(status=status.update, note=console.print))
    console.print(f"report: {result.report} (run {result.run_id}, {result.seconds / 60:.1f} min)")
    return result.to_json()


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    page = demo.report(args.run_id, args.store)
    console.print(f"report: {page}")
    return {"run_id": args.run_id, "report": str(page)}


def register(sub: Subparsers) -> None:
    """Add evaluate, demo and report."""
    p = sub.add_parser("evaluate", help="the evaluation table of an original filter and its .nnsl file")
    p.add_argument("original", type=Path, help="the uncompressed filter file")
    p.add_argument("file", type=Path, help="the .nnsl file (its decoded filter is measured), or nnslim deploy's .onnx")
    p.add_argument("--runtime", choices=RUNTIMES, help="the runtime FILE is for (an .onnx file's own is checked)")
    add_selection(p, "416x240")
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qps", help="comma-separated ladder QPs (the filter's by default; four or more give BD-rates)")
    p.add_argument("--frames", type=int, help="first N frames of each sequence")
    p.add_argument("--repetitions", type=int, default=5, help="timed 1080p frames per filter and runtime, in turns")
    p.add_argument("--no-timing", action="store_true", help="measure size and quality only (no runtime or memory)")
    p.add_argument("--threads", type=int, help="CPU threads for the timings (every core by default)")
    p.add_argument("--update", type=Path, help="folder of nnslim adapt's updates of FILE: each sequence with its own")
    add_trust(p)
    add_limit(p)
    add_json(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the main job: codecs, compress, pack, evaluate, and a report")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder; a rerun resumes")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="sequence folder (built if missing)")
    p.add_argument("--model", type=Path, help="filter to compress (the shipped multi-QP post-filter by default)")
    p.add_argument(
        "--shipped", type=Path, help="a slim .nnsl of the model, evaluated beside this run's (default MODEL.bbc.nnsl)"
    )
    add_trust(p)
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="fewer codecs, frames and retraining steps")
    speed.add_argument("--full", action="store_true", help="the full recipe and all frames (hours on a CPU)")
    add_json(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="render a stored demo run's report again")
    p.add_argument("run_id", type=int, help="run id (see nnslim runs)")
    add_json(p)
    p.set_defaults(func=cmd_report)
