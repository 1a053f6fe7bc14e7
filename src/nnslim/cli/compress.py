"""Commands that compress: compress (one recipe) and sweep (a grid of settings, with a Pareto front)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from nnslim.cli.common import Subparsers, add_json, add_trust, bar, cell, console, int_list, spinner
from nnslim.compress.recipe import OBJECTIVES
from nnslim.evaluate.runtime import RUNTIMES
from nnslim.jobs import compress, sweep


def cmd_compress(args: argparse.Namespace) -> dict[str, Any]:
    request = compress.CompressRequest(
        args.model, args.out, args.recipe, args.max_loss, args.sequences, args.codec,
        int_list(args.qp) if args.qp else (), args.max_size, not args.no_timing, args.threads, args.cache,
        args.store, args.trust_factory, args.objective, args.runtime, args.frames,
    )  # fmt: skip
    with spinner("compressing") as progress:
        result = compress.compress(request, progress)
    first, last = result.original_step, result.slim_step
    speed = ""
    if "speed" in result.summary:
        timing = result.summary["speed"]
        speed = (
            f"{timing['speedup']:.2f}x {'faster' if timing['speedup'] >= 1 else 'slower'} per 1080p frame "
            f"in {timing['runtime']} (median of {timing['repetitions']} interleaved runs, "
            f"{timing['threads']} threads), "
        )
    console.print(
        f"slim filter: {last['parameters']:,} parameters ({1 - last['parameters'] / first['parameters']:.1%} fewer), "
        f"{speed}test Y-PSNR {last['test_psnr_y'] - first['test_psnr_y']:+.3f} dB; written to {args.out}"
    )
    return result.to_json()


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    request = sweep.SweepRequest(
        args.sweep, args.out, sweep.Executor(args.ray, args.workers, args.threads), args.retry_failed, args.cache,
        args.store, args.trust_factory,
    )  # fmt: skip
    with bar() as progress:
        task = progress.add_task("preparing", total=None)

        def show(p: sweep.Tally) -> None:
            before = f" ({p.skipped} finished before)" if p.skipped else ""
            progress.update(
                task,
                total=p.total - p.skipped,  # the time left is estimated from this run's points only
                completed=p.done + p.failed - p.skipped,
                description=f"done {p.done} · running {p.running} · failed {p.failed}{before}",
            )

        result = sweep.run_sweep(request, lambda s: progress.update(task, description=s), show)
    _print_sweep(result.document)
    console.print(
        f"{result.document['ran']} points run, {result.document['skipped']} finished before; "
        f"report: {args.out / 'report' / 'index.html'}"
    )
    return result.to_json()


def _print_sweep(result: dict[str, Any]) -> None:
    table = Table(title=f"Pareto front ({len(result['front'])} of {result['finished']} points)")
    columns = ["model", "fraction", "energy", "method", "bits", "nnr_qp", "bytes", "ms_per_1080p", "loss_db"]
    columns.append("test_loss_db")
    for column in columns:
        table.add_column(column, justify="right")
    for row in result["front"]:
        table.add_row(*(cell(row.get(c)) for c in columns))
    console.print(table)
    for best in result["best"]:
        row = best["row"]
        what = (
            f"{row['bytes']:,} bytes, {row['ms_per_1080p']:.0f} ms, validation loss {row['loss_db']:+.3f} dB, "
            f"test loss {row['test_loss_db']:+.3f} dB (point {row['key']})"
            if row
            else "none"
        )
        console.print(f"{best['aim']} within {best['max_loss_db']} dB on validation: {what}")
    for failed in result["failed"]:
        console.print(f"[red]failed[/red] point {failed['key']}: {failed['error']}")


def register(sub: Subparsers) -> None:
    """Add compress and sweep."""
    p = sub.add_parser("compress", help="prune, split and quantize a filter by a recipe")
    p.add_argument("model", type=Path, help="filter file (.pt with its .json beside it)")
    p.add_argument("--recipe", default="bbc", help="bbc, deep-compression, lowrank, full, or a TOML file")
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qp", help="QP(s), comma-separated (the filter's training QPs by default)")
    p.add_argument("--max-loss", type=float, default=0.05, help="Y-PSNR loss budget in dB (on validation)")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun resumes what it finished")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--max-size", default="416x240", help="test sequences up to WxH are reported at each step")
    p.add_argument("--frames", type=int, help="train and measure on the first N frames of each sequence")
    p.add_argument("--no-timing", action="store_true", help="skip the 1080p frame timing at each step")
    p.add_argument("--threads", type=int, help="CPU threads (all cores by default)")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="size: keep every step within the budget; speed: also drop a step that is not faster (the recipe's own "
        "by default, else size)",
    )
    p.add_argument(
        "--runtime", choices=RUNTIMES, help="where speed is measured (the recipe's own by default, else torch)"
    )
    add_trust(p)
    add_json(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("sweep", help="compress, pack and evaluate every point of a sweep file; Pareto front")
    p.add_argument("sweep", type=Path, help="sweep file (TOML)")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun runs only the missing points")
    p.add_argument("--ray", metavar="ADDRESS", help="run on Ray: local (start one here), auto, or HOST:PORT")
    p.add_argument("--workers", type=int, help="local pool size (as many points as fit on the cores by default)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per point")
    p.add_argument("--retry-failed", action="store_true", help="run failed points again")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    add_trust(p)
    add_json(p)
    p.set_defaults(func=cmd_sweep)
