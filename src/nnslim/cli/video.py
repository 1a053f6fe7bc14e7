"""Commands of the codec testbed: sequences, encode, codecs; and the results store: runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from nnslim.cli.common import (
    Subparsers,
    add_json,
    add_selection,
    bar,
    cell,
    console,
    fmt,
    int_list,
    name_list,
    spinner,
)
from nnslim.errors import NnslimError
from nnslim.io import require_writable_file
from nnslim.jobs import video
from nnslim.store import ResultsStore
from nnslim.video import content
from nnslim.video.codecs import CODECS, get_codec


def cmd_sequences(args: argparse.Namespace) -> dict[str, Any]:
    request = video.SequencesRequest(
        args.out, name_list(args.only), tuple(args.add or ()), args.split, args.size, args.fps, args.name
    )
    with bar() as progress:
        task = progress.add_task("building sequences", total=None)
        result = video.sequences(request, lambda done, total: progress.update(task, completed=done, total=total))
    if result.added:
        for seq in result.sequences:
            console.print(f"added {seq.name} ({seq.size}, {seq.frames} frames, {seq.split}) to {result.folder}")
        return result.to_json()
    table = Table(title=f"sequences in {result.folder}")
    for column in ("name", "split", "size", "fps", "frames", "sha256"):
        table.add_column(column)
    for seq in result.sequences:
        table.add_row(seq.name, seq.split, seq.size, f"{seq.fps:.3f}", str(seq.frames), seq.sha256[:16])
    console.print(table)
    if result.unreproduced:
        console.print(f"[yellow]warning: {', '.join(result.unreproduced)} differ from the pinned hashes[/yellow]")
    return result.to_json()


def cmd_encode(args: argparse.Namespace) -> dict[str, Any]:
    request = video.EncodeRequest(
        args.sequence, args.codec, args.qp, args.out, args.size, args.fps, args.frames, args.preset,
        not args.no_vmaf, args.save_decoded, args.store,
    )  # fmt: skip
    with spinner("encoding") as progress:
        result = video.encode(request, progress)
    row = result.document
    console.print(
        f"{row['codec']} QP {args.qp}: {row['kbps']:.1f} kbit/s, Y-PSNR {row['psnr_y']:.2f} dB, "
        f"YUV-PSNR {row['psnr_yuv']:.2f} dB, VMAF {fmt(row['vmaf'], 2)}, encode {row['encode_s']:.2f} s wall "
        f"({row['encode_cpu_s']:.2f} s CPU), decode {row['decode_s']:.3f} s -> {row['bitstream']}"
    )
    if "decoded" in row:
        console.print(f"decoded video written to {row['decoded']}")
    return result.to_json()


def _presets(items: list[str]) -> dict[str, str]:
    presets = {}
    for item in items:
        codec, sep, value = item.partition("=")
        if not sep or not value:
            raise NnslimError(f"--preset takes CODEC=VALUE, got {item!r}")
        get_codec(codec)
        presets[codec] = value
    return presets


def cmd_codecs(args: argparse.Namespace) -> dict[str, Any]:
    request = video.CodecsRequest(
        args.sequences, name_list(args.codecs), int_list(args.qps), args.frames, args.split, name_list(args.names),
        args.max_size, args.anchor, _presets(args.preset), not args.no_vmaf, args.cache, args.store,
    )  # fmt: skip
    if args.plot:
        require_writable_file(args.plot)
    with spinner("encoding") as progress:
        result = video.codecs(request, progress)
    print_comparison(result.document)
    if args.plot:
        from nnslim.evaluate.plots import plot_rd_curves

        plot_rd_curves(result.document["rows"], args.plot)
        console.print(f"rate-distortion curves written to {args.plot}")
    return result.to_json()


def print_comparison(report: dict[str, Any]) -> None:
    """The comparison's summary and per-sequence BD-rate tables."""
    settings, anchor = report["settings"], report["anchor"]
    table = Table(title=f"codec comparison: {len(settings['sequences'])} sequences, QPs {settings['qps']}")
    columns = ("codec", "standard", "preset", "kbps", "Y-PSNR", "VMAF", f"enc time vs {anchor}", f"BD-rate vs {anchor}")
    for column in columns:
        table.add_column(column, justify="left" if column in ("codec", "standard", "preset") else "right")
    for item in report["summary"]:
        table.add_row(
            item["codec"], item["standard"], item["preset"], fmt(item["kbps"], 1), fmt(item["psnr_y"], 2),
            fmt(item["vmaf"], 2), f"{fmt(item[f'encode_time_vs_{anchor}'], 2)}x",
            f"{fmt(item[f'bd_rate_vs_{anchor}'], 1, signed=True)}%",
        )  # fmt: skip
    console.print(table)
    per_seq = Table(title=f"BD-rate vs {anchor} per sequence (Y-PSNR, {settings['bd_method']} interpolation)")
    per_seq.add_column("codec")
    for name in settings["sequences"]:
        per_seq.add_column(name, justify="right")
    for item in report["summary"]:
        values = {
            p["sequence"]: p[f"bd_rate_vs_{anchor}"] for p in report["per_sequence"] if p["codec"] == item["codec"]
        }
        per_seq.add_row(item["codec"], *(f"{fmt(values.get(s), 1, signed=True)}%" for s in settings["sequences"]))
    console.print(per_seq)


def _scalars(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Every number, string and boolean in nested dicts, by dotted key (lists and tables left out)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _scalars(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, str | int | float | bool) or value is None:
        out[prefix] = value
    return out


def _compare_runs(store: ResultsStore, first: int, second: int) -> dict[str, Any]:
    a, b = store.run(first), store.run(second)
    left = _scalars("", {"params": a.params, "results": a.results, "git_commit": a.git_commit}, {})
    right = _scalars("", {"params": b.params, "results": b.results, "git_commit": b.git_commit}, {})
    table = Table(title=f"run {a.id} ({a.kind}) against run {b.id} ({b.kind})")
    for column in ("field", f"run {a.id}", f"run {b.id}"):
        table.add_column(column, overflow="fold")
    rows = []
    for key in dict.fromkeys([*left, *right]):
        mine, theirs = left.get(key, ""), right.get(key, "")
        if mine != theirs or key.startswith("params"):
            table.add_row(key, cell(mine), cell(theirs))
            rows.append({"field": key, str(a.id): mine, str(b.id): theirs})
    console.print(table)
    return {"compare": [a.id, b.id], "differences": rows}


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    store = ResultsStore(args.store)
    if args.compare:
        return _compare_runs(store, *args.compare)
    runs = store.runs(args.kind)
    table = Table(title=f"runs in {store.path}")
    for column in ("id", "kind", "created", "nnslim", "commit", "params"):
        table.add_column(column)
    for run in runs:
        params = ", ".join(f"{k}={v}" for k, v in run.params.items() if not isinstance(v, (dict, list)))
        table.add_row(str(run.id), run.kind, run.created, run.nnslim_version, (run.git_commit or "")[:10], params[:80])
    console.print(table)
    keys = ("id", "kind", "created", "params", "versions", "git_commit")
    return {"runs": [{k: getattr(r, k) for k in keys} for r in runs]}


def register(sub: Subparsers) -> None:
    """Add the testbed's and the store's subcommands."""
    p = sub.add_parser("sequences", help="build the default test sequences, or add your own")
    p.add_argument("--out", type=Path, required=True, help="sequence folder (created if missing)")
    p.add_argument("--only", help="build only these default sequences (comma-separated names)")
    p.add_argument("--add", type=Path, action="append", help="add a .yuv, .y4m or .mp4 file (repeatable)")
    p.add_argument("--split", default="test", choices=content.SPLITS, help="split of added files")
    p.add_argument("--size", help="WxH of an added .yuv whose name does not say it")
    p.add_argument("--fps", type=float, help="frame rate of added files")
    p.add_argument("--name", help="name of the added file in the manifest")
    add_json(p, store=False)
    p.set_defaults(func=cmd_sequences)

    p = sub.add_parser("encode", help="encode one sequence with one codec at one QP")
    p.add_argument("sequence", type=Path, help=".yuv (JVET name or --size), .y4m or .mp4")
    p.add_argument("--codec", required=True, help=f"one of {', '.join(CODECS)}")
    p.add_argument("--qp", type=int, required=True, help="ladder QP (H.265 scale; AV1 mapped, see docs)")
    p.add_argument("--out", type=Path, required=True, help="existing folder for the bitstream")
    p.add_argument("--size", help="WxH of a .yuv whose name does not say it")
    p.add_argument("--fps", type=float, help="frame rate, if the file does not say it")
    p.add_argument("--frames", type=int, help="code only the first N frames")
    p.add_argument("--preset", help="encoder preset instead of the default")
    p.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    p.add_argument("--save-decoded", action="store_true", help="also write the decoded 8-bit .yuv into --out")
    add_json(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("codecs", help="compare codecs on a sequence folder")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codec names")
    p.add_argument("--qps", default="22,27,32,37", help="comma-separated ladder QPs")
    p.add_argument("--frames", type=int, help="frames per sequence (all by default)")
    add_selection(p, None)
    p.add_argument("--anchor", help="codec the BD-rates and time ratios refer to (x264 if compared)")
    p.add_argument("--preset", action="append", default=[], help="CODEC=PRESET (repeatable)")
    p.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    p.add_argument("--plot", type=Path, help="write rate-distortion curves to this PNG")
    add_json(p)
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("runs", help="list the runs in the results store")
    p.add_argument("--kind", help="only runs of this kind (encode, codecs, compress, evaluate, ...)")
    p.add_argument("--compare", type=int, nargs=2, metavar=("A", "B"), help="two runs side by side (differences)")
    add_json(p)
    p.set_defaults(func=cmd_runs)
