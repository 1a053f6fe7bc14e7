"""The ``nnslim`` command line: one thin subcommand per job, each able to write JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nnslim import __version__
from nnslim.bitstream.container import DEFAULT_MAX_PARAMS
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_json, require_writable_dir, require_writable_file
from nnslim.store import ResultsStore
from nnslim.video import content
from nnslim.video.codecs import CODECS, encoder_version, ffmpeg_version, get_codec
from nnslim.video.compare import Point, cached_row, comparison_report, measure, run_point
from nnslim.video.decode import decode_file
from nnslim.video.yuv import Sequence, describe_yuv, jvet_name, parse_size, to_8bit, write_yuv

console = Console()


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other nnslim error."""

    def error(self, message: str) -> NoReturn:
        raise NnslimError(message)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NnslimError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _presets(items: list[str]) -> dict[str, str]:
    presets = {}
    for item in items:
        codec, sep, value = item.partition("=")
        if not sep or not value:
            raise NnslimError(f"--preset takes CODEC=VALUE, got {item!r}")
        get_codec(codec)
        presets[codec] = value
    return presets


def _selected_sequences(args: argparse.Namespace) -> list[content.Sequence]:
    names = _name_list(args.names) if args.names else None
    max_size = parse_size(args.max_size) if args.max_size else None
    return list(content.select(content.load_manifest(args.sequences), args.split, names, max_size))


def _versions(codecs: list[str]) -> dict[str, str]:
    return {"nnslim": __version__, "ffmpeg": ffmpeg_version(), **{c: encoder_version(c) for c in codecs}}


def _model_versions(codecs: list[str]) -> dict[str, str]:
    """Codec versions plus the libraries that run and code the filters."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "onnxruntime", "nncodec"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return {**_versions(codecs), **found}


def _write_json(path: Path | None, document: dict[str, Any]) -> None:
    if path is not None:
        atomic_write_json(path, document)
        console.print(f"JSON written to {path}")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def cmd_sequences(args: argparse.Namespace) -> dict[str, Any]:
    out = require_writable_dir(args.out, create=True)
    if args.add:
        size = parse_size(args.size) if args.size else None
        added = [content.import_video(p, out, args.split, size, args.fps, args.name) for p in args.add]
        for seq in added:
            console.print(f"added {seq.name} ({seq.size}, {seq.frames} frames, {seq.split}) to {out}")
        return {"sequences": [_describe(s) for s in added]}
    recipes = content.DEFAULT_RECIPES
    if args.only:
        wanted = _name_list(args.only)
        unknown = sorted(set(wanted) - {r.name for r in recipes})
        if unknown:
            raise NnslimError(
                f"unknown sequence(s) {', '.join(unknown)}; choose from {', '.join(r.name for r in recipes)}"
            )
        recipes = tuple(r for r in recipes if r.name in wanted)
    with _progress() as progress:
        task = progress.add_task("building sequences", total=len(recipes))
        built = content.build_sequences(out, recipes, on_done=lambda _: progress.advance(task))
    table = Table(title=f"sequences in {out}")
    for column in ("name", "split", "size", "fps", "frames", "sha256"):
        table.add_column(column)
    for seq in built:
        table.add_row(seq.name, seq.split, seq.size, f"{seq.fps:.3f}", str(seq.frames), seq.sha256[:16])
    console.print(table)
    differs = content.unreproduced(built, recipes)
    if differs:
        console.print(f"[yellow]warning: {', '.join(differs)} differ from the pinned hashes[/yellow]")
    return {"folder": str(out), "sequences": [_describe(s) for s in built], "unreproduced": differs}


def _describe(seq: content.Sequence) -> dict[str, Any]:
    return {
        "name": seq.name,
        "file": str(seq.path),
        "width": seq.width,
        "height": seq.height,
        "fps": seq.fps,
        "frames": seq.frames,
        "split": seq.split,
        "source": seq.source,
        "sha256": seq.sha256,
    }


def cmd_encode(args: argparse.Namespace) -> dict[str, Any]:
    spec = get_codec(args.codec, args.preset)
    spec.quantizer(args.qp)
    out = require_writable_dir(args.out)
    if args.json:
        require_writable_file(args.json)
    seq = content.as_yuv(args.sequence, out, parse_size(args.size) if args.size else None, args.fps)
    with console.status(f"encoding {seq.name} with {spec.name} at QP {args.qp}"):
        row = measure(Point(seq, spec, args.qp), args.frames, out, with_vmaf=not args.no_vmaf)
    console.print(
        f"{spec.name} QP {args.qp}: {row['kbps']:.1f} kbit/s, Y-PSNR {row['psnr_y']:.2f} dB, "
        f"YUV-PSNR {row['psnr_yuv']:.2f} dB, VMAF {_fmt(row['vmaf'], 2)}, encode {row['encode_s']:.2f} s wall "
        f"({row['encode_cpu_s']:.2f} s CPU), decode {row['decode_s']:.3f} s -> {row['bitstream']}"
    )
    if args.save_decoded:
        decoded = decode_file(Path(row["bitstream"]), spec.muxer).video
        target = out / jvet_name(f"{seq.name}-{spec.name}-qp{args.qp}", seq.width, seq.height, seq.fps)
        write_yuv(target, decoded if decoded.y.dtype == np.uint8 else to_8bit(decoded))
        row["decoded"] = str(target)
        console.print(f"decoded video written to {target}")
    run_id = ResultsStore(args.store).record(
        "encode",
        {
            "sequence": str(args.sequence),
            "codec": spec.name,
            "preset": spec.preset,
            "qp": args.qp,
            "frames": row["frames"],
        },
        row,
        _versions([spec.name]),
    )
    return {"run_id": run_id, **row}


def cmd_codecs(args: argparse.Namespace) -> dict[str, Any]:
    codec_names = _name_list(args.codecs)
    presets = _presets(args.preset)
    specs = [get_codec(name, presets.get(name)) for name in codec_names]
    qps = _int_list(args.qps)
    if not qps:
        raise NnslimError("--qps is empty")
    for spec in specs:
        for qp in qps:
            spec.quantizer(qp)
    if args.frames is not None and args.frames <= 0:
        raise NnslimError("--frames must be positive")
    for path in (args.json, args.plot):
        if path:
            require_writable_file(path)
    anchor = args.anchor or ("x264" if "x264" in codec_names else codec_names[0])
    if anchor not in codec_names:
        raise NnslimError(f"anchor {anchor} is not among the codecs compared")
    sequences = _selected_sequences(args)
    if not sequences:
        raise NnslimError(f"no {args.split or ''} sequences in {args.sequences} match the selection")
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    points = [Point(seq, spec, qp) for seq in sequences for spec in specs for qp in qps]
    rows = []
    with _progress() as progress:
        task = progress.add_task("encoding", total=len(points))
        for point in points:
            cached = cached_row(point, args.frames, cache) is not None
            progress.update(
                task,
                description=f"{point.sequence.name} {point.codec.name} QP {point.qp}" + (" (cached)" if cached else ""),
            )
            rows.append(run_point(point, args.frames, cache, not args.no_vmaf))
            progress.advance(task)
        progress.update(task, description="encoded")
    settings = {
        "sequences": [s.name for s in sequences],
        "split": args.split,
        "codecs": codec_names,
        "qps": qps,
        "frames": args.frames,
        "presets": {s.name: s.preset for s in specs},
    }
    report = comparison_report(rows, anchor, settings)
    _print_comparison(report, anchor)
    if args.plot:
        from nnslim.evaluate.plots import plot_rd_curves

        plot_rd_curves(rows, args.plot)
        console.print(f"rate-distortion curves written to {args.plot}")
    run_id = ResultsStore(args.store).record("codecs", settings, report, _versions(codec_names))
    return {"run_id": run_id, **report}


def _fmt(value: float | None, digits: int, signed: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _print_comparison(report: dict[str, Any], anchor: str) -> None:
    settings = report["settings"]
    table = Table(title=f"codec comparison: {len(settings['sequences'])} sequences, QPs {settings['qps']}")
    for column in (
        "codec",
        "standard",
        "preset",
        "kbps",
        "Y-PSNR",
        "VMAF",
        f"enc time vs {anchor}",
        f"BD-rate vs {anchor}",
    ):
        table.add_column(column, justify="left" if column in ("codec", "standard", "preset") else "right")
    for item in report["summary"]:
        table.add_row(
            item["codec"],
            item["standard"],
            item["preset"],
            _fmt(item["kbps"], 1),
            _fmt(item["psnr_y"], 2),
            _fmt(item["vmaf"], 2),
            f"{_fmt(item[f'encode_time_vs_{anchor}'], 2)}x",
            f"{_fmt(item[f'bd_rate_vs_{anchor}'], 1, signed=True)}%",
        )
    console.print(table)
    per_seq = Table(title=f"BD-rate vs {anchor} per sequence (Y-PSNR, {settings['bd_method']} interpolation)")
    per_seq.add_column("codec")
    for name in settings["sequences"]:
        per_seq.add_column(name, justify="right")
    for item in report["summary"]:
        values = {
            p["sequence"]: p[f"bd_rate_vs_{anchor}"] for p in report["per_sequence"] if p["codec"] == item["codec"]
        }
        per_seq.add_row(item["codec"], *(f"{_fmt(values.get(s), 1, signed=True)}%" for s in settings["sequences"]))
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
            table.add_row(key, _cell(mine), _cell(theirs))
            rows.append({"field": key, str(a.id): mine, str(b.id): theirs})
    console.print(table)
    return {"compare": [a.id, b.id], "differences": rows}


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_runs(args: argparse.Namespace) -> dict[str, Any]:
    if args.compare:
        return _compare_runs(ResultsStore(args.store), *args.compare)
    runs = ResultsStore(args.store).runs(args.kind)
    table = Table(title=f"runs in {ResultsStore(args.store).path}")
    for column in ("id", "kind", "created", "nnslim", "commit", "params"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            str(run.id),
            run.kind,
            run.created,
            run.nnslim_version,
            (run.git_commit or "")[:10],
            ", ".join(f"{k}={v}" for k, v in run.params.items() if not isinstance(v, (dict, list)))[:80],
        )
    console.print(table)
    return {
        "runs": [
            {
                "id": r.id,
                "kind": r.kind,
                "created": r.created,
                "params": r.params,
                "versions": r.versions,
                "git_commit": r.git_commit,
            }
            for r in runs
        ]
    }


def _train_split_names(text: str, available: list[Sequence], role: str) -> list[str]:
    names = _name_list(text) if text else []
    unknown = sorted(set(names) - {s.name for s in available})
    if unknown:
        raise NnslimError(f"{role} sequence(s) {', '.join(unknown)} are not in the train split")
    return names


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.models import data, train
    from nnslim.models.filters import ArchSpec, build

    try:
        kwargs = json.loads(args.arch_args) if args.arch_args else {}
    except json.JSONDecodeError as exc:
        raise NnslimError(f"--arch-args is not JSON: {exc}") from None
    arch = ArchSpec(args.arch, kwargs)
    build(arch)
    if args.loss not in ("mse", "l1"):
        raise NnslimError(f"--loss must be mse or l1, got {args.loss!r}")
    if not 0 <= 2 * args.margin < args.patch:
        raise NnslimError(f"--margin {args.margin} leaves nothing of a {args.patch}-pixel patch for the loss")
    qps = tuple(_int_list(args.qp))
    for qp in qps:
        get_codec(args.codec).quantizer(qp)
    require_writable_file(args.out)
    available = list(content.select(content.load_manifest(args.sequences), "train"))
    validation = _train_split_names(args.validation, available, "validation")
    if args.train:
        names = _train_split_names(args.train, available, "training")
        if set(names) & set(validation):
            raise NnslimError("a sequence cannot be both trained and validated on")
        training = [s for s in available if s.name in names]
    else:
        training = [s for s in available if s.name not in validation]
    if not training:
        raise NnslimError(f"no train-split sequences left in {args.sequences} for training")
    if args.init:
        train.starting_weights(args.init, arch)
    config = train.TrainConfig(
        arch=arch,
        codec=args.codec,
        qps=qps,
        steps=args.steps,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        loss=args.loss,
        margin=args.margin,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        train_sequences=tuple(s.name for s in training),
        validation_sequences=tuple(validation),
        init=str(args.init) if args.init else None,
    )
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    with console.status("encoding the training sequences") as status:
        train_pairs = data.encode_pairs(training, args.codec, qps, cache, on_step=status.update)
        val_pairs = data.encode_pairs([s for s in available if s.name in validation], args.codec, qps, cache)
    with _progress() as progress:
        task = progress.add_task("training", total=config.steps)

        def step(done: int, loss: float, report: dict[str, float] | None) -> None:
            text = f"training, loss {loss:.2e}"
            if report:
                text += f", validation gain {report['gain_db']:+.3f} dB"
                console.print(
                    f"step {done}: loss {loss:.3e}, validation Y-PSNR {report['psnr_y_codec']:.3f} -> "
                    f"{report['psnr_y_filtered']:.3f} dB ({report['gain_db']:+.3f})"
                )
            progress.update(task, completed=done, description=text)

        description = train.train(config, train_pairs, val_pairs, args.out, resume=args.resume, on_step=step)
    console.print(f"filter written to {args.out} and {args.out.with_suffix('.json')}")
    return description


def cmd_filter(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.models.apply import filter_yuv_file
    from nnslim.models.train import load_filter

    model, meta = load_filter(args.model, args.trust_factory)
    size = parse_size(args.size) if args.size else None
    decoded = describe_yuv(args.input, size)
    reference = describe_yuv(args.reference, (decoded.width, decoded.height)) if args.reference else None
    if reference is not None and reference.frames < decoded.frames:
        raise NnslimError(
            f"{args.reference.name} has {reference.frames} frames, {args.input.name} has {decoded.frames}"
        )
    require_writable_file(args.out)
    trained_qps = meta.get("training", {}).get("qps", [])
    qp = args.qp if args.qp is not None else (trained_qps[0] if len(trained_qps) == 1 else None)
    if qp is None:
        raise NnslimError("this filter was trained on several QPs; give --qp")
    with _progress() as progress:
        task = progress.add_task("filtering", total=decoded.frames)
        result = filter_yuv_file(
            model, decoded, args.out, qp, reference, args.tile, args.overlap, on_frame=lambda: progress.advance(task)
        )
    if reference is not None:
        before, after = result["psnr_before"], result["psnr_after"]
        console.print(
            "Y/U/V PSNR before {:.3f}/{:.3f}/{:.3f} dB, after {:.3f}/{:.3f}/{:.3f} dB (Y {:+.3f} dB)".format(
                before["y"], before["u"], before["v"], after["y"], after["u"], after["v"], after["y"] - before["y"]
            )
        )
    console.print(f"filtered {decoded.frames} frames into {args.out}; peak memory {result['peak_rss_mib']:.0f} MiB")
    return {"model": str(args.model), "input": str(args.input), "qp": qp, **result}


def _refuse_training_sequences(meta: dict[str, Any], sequences: list[Sequence]) -> None:
    """Measurements are on held-out sequences only: refuse any that made the filter.

    That is every sequence trained or validated on by the filter and by each filter it was
    fine-tuned from (``--init``), followed back.
    """
    from nnslim.models.train import lineage

    used = {
        name
        for run in lineage(meta.get("training", {}))
        for name in (*run.get("train_sequences", []), *run.get("validation_sequences", []))
    }
    overlap = sorted(used & {s.name for s in sequences})
    if overlap:
        raise NnslimError(f"{', '.join(overlap)} were used in training; measure on held-out sequences")


def cmd_assess(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.models.assess import filter_gain
    from nnslim.models.train import load_filter

    model, meta = load_filter(args.model, args.trust_factory)
    codec = args.codec or meta.get("training", {}).get("codec", "x265")
    qps = tuple(_int_list(args.qps))
    for qp in qps:
        get_codec(codec).quantizer(qp)
    sequences = _selected_sequences(args)
    _refuse_training_sequences(meta, sequences)
    if not sequences:
        raise NnslimError(f"no {args.split} sequences in {args.sequences} match the selection")
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    with console.status("measuring") as status:
        result = filter_gain(model, sequences, codec, qps, cache, args.frames, on_step=status.update)
    table = Table(title=f"{args.model.name} on {codec}, {args.split} split")
    for column in ("sequence", "QP", "kbps", "Y-PSNR codec", "Y-PSNR filtered", "gain dB"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for row in result["rows"]:
        table.add_row(
            row["sequence"],
            str(row["qp"]),
            _fmt(row["kbps"], 1),
            _fmt(row["psnr_y_codec"], 3),
            _fmt(row["psnr_y_filtered"], 3),
            _fmt(row["gain_db"], 3, signed=True),
        )
    console.print(table)
    bd = result["mean"]["bd_rate"]
    bd_text = "n/a (needs four QPs or more)" if math.isnan(bd) else f"{bd:+.2f}%"
    console.print(f"mean gain {result['mean']['gain_db']:+.3f} dB; BD-rate {bd_text}")
    return {"model": str(args.model), "codec": codec, "qps": list(qps), "split": args.split, **result}


def cmd_compress(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.compress import recipe as recipes
    from nnslim.compress.schedule import Context, Run
    from nnslim.evaluate.plots import plot_pruning_steps
    from nnslim.evaluate.runtime import export_onnx, onnx_max_difference, torch_speedup
    from nnslim.models import data, train

    chosen = recipes.load(args.recipe)
    _, meta = train.load_filter(args.model, args.trust_factory)
    base = train.TrainConfig.from_dict(meta["training"])
    codec = args.codec or base.codec
    qps = tuple(_int_list(args.qp)) if args.qp else base.qps
    for qp in qps:
        get_codec(codec).quantizer(qp)
    if args.max_loss < 0:
        raise NnslimError(f"--max-loss must be at least 0 dB, got {args.max_loss}")
    if not base.validation_sequences:
        raise NnslimError(f"{args.model} records no validation sequences; compress judges its loss budget on them")
    out = require_writable_dir(args.out, create=True)
    manifest = content.load_manifest(args.sequences)
    available = {s.name: s for s in content.select(manifest, "train")}
    missing = sorted(set(base.train_sequences + base.validation_sequences) - set(available))
    if missing:
        raise NnslimError(f"{args.sequences} lacks the filter's training sequences {', '.join(missing)}")
    test = list(content.select(manifest, "test", None, parse_size(args.max_size) if args.max_size else None))
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    with console.status("encoding the sequences") as status:
        pairs = {
            split: data.encode_pairs(seqs, codec, qps, cache, on_step=status.update)
            for split, seqs in (
                ("train", [available[n] for n in base.train_sequences]),
                ("validation", [available[n] for n in base.validation_sequences]),
                ("test", test),
            )
        }
    config = dataclasses.replace(base, codec=codec, qps=qps, threads=args.threads)
    with console.status("compressing") as status:
        ctx = Context(
            pairs["train"], pairs["validation"], pairs["test"], config, args.max_loss, not args.no_timing, status.update
        )
        model, steps, quantization = Run(args.model, chosen, ctx, out, console.print, args.trust_factory).run()
    slim_index = steps[-1]["kept"]
    summary = {
        "recipe": chosen.to_dict(),
        "original": str(args.model),
        "codec": codec,
        "qps": list(qps),
        "max_loss_db": args.max_loss,
        "slim_index": slim_index,
        "original_step": steps[0],
        "slim_step": steps[slim_index],
        "quantization": quantization,
    }
    export_onnx(model, out / "slim.onnx")
    summary["onnx"] = {"file": "slim.onnx", "max_difference": onnx_max_difference(model, out / "slim.onnx")}
    if summary["onnx"]["max_difference"] > 1e-4:
        raise NnslimError(f"ONNX Runtime's output differs from PyTorch's by {summary['onnx']['max_difference']:.2e}")
    first, last = summary["original_step"], summary["slim_step"]
    speed = ""
    if not args.no_timing:
        with console.status("timing the original and the slim filter in turns"):
            summary["speed"] = torch_speedup(
                train.load_filter(args.model, args.trust_factory)[0], model, threads=args.threads
            )
        timing = summary["speed"]
        speed = (
            f"{timing['speedup']:.2f}x {'faster' if timing['speedup'] >= 1 else 'slower'} per 1080p frame "
            f"(median of {timing['repetitions']} interleaved runs, {timing['threads']} threads), "
        )
    train.save_filter(model, out / "slim.pt", {**meta, "compression": summary})
    atomic_write_json(out / "steps.json", {"settings": summary, "steps": steps})
    summary["run_id"] = ResultsStore(args.store).record(
        "compress", {"model": str(args.model), "out": str(out), "recipe": chosen.name}, {**summary, "steps": steps},
        _model_versions([codec]),
    )  # fmt: skip
    plot_pruning_steps(steps, out / "steps.png")
    console.print(
        f"slim filter: {last['parameters']:,} parameters ({1 - last['parameters'] / first['parameters']:.1%} fewer), "
        f"{speed}test Y-PSNR {last['test_psnr_y'] - first['test_psnr_y']:+.3f} dB; written to {out}"
    )
    return summary


def _filter_path(path: Path) -> Path:
    """A filter file, or the ``slim.pt`` of a compress output folder."""
    return path / "slim.pt" if path.is_dir() else path


def _coder_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        name, sep, coder = item.partition("=")
        if not sep or not name or not coder:
            raise NnslimError(f"--tensor-coder takes NAME=CODER, got {item!r}")
        overrides[name] = coder
    return overrides


def _split_pairs(args: argparse.Namespace, meta: dict[str, Any], split: str) -> list[Any]:
    """Decoded frames of the filter's validation sequences or of the test split, at its codec and QPs."""
    from nnslim.models import data

    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    size = parse_size(args.max_size) if args.max_size else None
    training = meta.get("training", {})
    with console.status(f"encoding the {split} sequences") as status:
        return data.filter_pairs(training, split, args.sequences, cache, size, args.frames, status.update)


def cmd_pack(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from nnslim.bitstream.pack import PackConfig, pack, summary, unpack
    from nnslim.bitstream.rate import search_qp
    from nnslim.io import atomic_write_bytes
    from nnslim.models.apply import WHOLE_FRAME
    from nnslim.models.filters import parameter_count
    from nnslim.models.train import load_filter, validate, validate_file

    model, meta = load_filter(_filter_path(args.model), args.trust_factory)
    config = PackConfig(
        coder=args.coder,
        qp=args.qp,
        nonweight_qp=args.nonweight_qp,
        dependent=args.dependent,
        lossless=args.lossless,
        bits=args.bits,
        index_bits=args.index_bits,
        raw_dtype=args.raw_dtype,
        coders=_coder_overrides(args.tensor_coder),
    )
    if args.max_loss is not None and config.coder != "nnr":
        raise NnslimError(f"--max-loss searches the NNR QP; it needs --coder nnr, not {config.coder}")
    if args.frame_step < 1:
        raise NnslimError(f"--frame-step must be 1 or more, not {args.frame_step}")
    require_writable_file(args.out)
    reference, _ = load_filter(args.against, args.trust_factory) if args.against else (model, meta)
    result: dict[str, Any] = {"model": str(args.model), "config": dataclasses.asdict(config)}
    start = time.perf_counter()
    if args.max_loss is None:
        data = pack(model, meta, config)
    else:
        validation = _split_pairs(args, meta, "validation")
        measured = (args.cache or content.cache_dir() / "encodes").parent / "psnr"
        reference_file = args.against or _filter_path(args.model)

        def psnr(m: Any, pairs: list[Any]) -> float:
            return validate(m, pairs, args.frame_step, WHOLE_FRAME)["psnr_y_filtered"]

        def reference_psnr_on(pairs: list[Any]) -> float:
            found = validate_file(reference_file, reference, pairs, args.frame_step, measured, WHOLE_FRAME)
            return found["psnr_y_filtered"]

        reference_psnr = reference_psnr_on(validation)
        with console.status("searching the NNR QP on validation") as status:
            qp, data, trials = search_qp(
                lambda qp: pack(model, meta, dataclasses.replace(config, qp=qp)),
                lambda packed: unpack(packed, trusted_factory=args.trust_factory)[0],
                lambda m: psnr(m, validation),
                reference_psnr,
                args.max_loss,
                on_trial=lambda t: status.update(f"QP {t['qp']}: {t['bytes']:,} bytes, loss {t['loss_db']:+.3f} dB"),
            )
        chosen = next(t for t in trials if t["qp"] == qp)
        search_seconds = time.perf_counter() - start
        test = _split_pairs(args, meta, "test")
        with console.status("measuring the chosen file once on the test split"):
            test_loss = reference_psnr_on(test) - psnr(unpack(data, trusted_factory=args.trust_factory)[0], test)
        result |= {
            "decided_on": "validation",
            "validation_sequences": sorted({p.name for p in validation}),
            "test_sequences": sorted({p.name for p in test}),
            "frame_step": args.frame_step,
            "reference_psnr_y": reference_psnr,
            "trials": trials,
            "chosen": chosen,
            "validation_loss_db": chosen["loss_db"],
            "test_loss_db": test_loss,
            "search_seconds": search_seconds,
        }
        console.print(
            f"tried QPs {', '.join(str(t['qp']) for t in sorted(trials, key=lambda t: t['qp']))}; "
            f"chose QP {qp}, the coarsest within {args.max_loss} dB on validation: "
            f"validation loss {chosen['loss_db']:+.3f} dB, test loss {test_loss:+.3f} dB"
        )
    seconds = time.perf_counter() - start
    atomic_write_bytes(args.out, data)
    fp32 = 4 * parameter_count(reference)
    info = summary(data, decode=True)
    result |= {
        "file": str(args.out),
        "bytes": len(data),
        "seconds": seconds,
        "fp32_bytes": fp32,
        "percent_of_fp32": 100.0 * len(data) / fp32,
        "header_bytes": info["header_bytes"],
        "entropy_bytes": info["entropy_bytes"],
    }
    of = f"the fp32 size of {args.against.name}" if args.against else "its fp32 size"
    console.print(f"{args.out}: {len(data):,} bytes, {result['percent_of_fp32']:.2f}% of {of}, in {seconds:.2f} s")
    return result


def _nnsl_bytes(path: Path, max_params: int) -> bytes:
    """The bytes of an .nnsl file, refused unread when larger than a file of ``max_params`` parameters can be."""
    from nnslim.bitstream.container import Limits

    limits = Limits.for_params(max_params)
    if not path.is_file():
        raise NnslimError(f"{path}: no such file")
    if path.stat().st_size > limits.max_file_bytes:
        raise NnslimError(f"{path}: {path.stat().st_size} bytes is more than the limit of {limits.max_file_bytes}")
    return path.read_bytes()


def cmd_unpack(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from nnslim.bitstream.pack import unpack
    from nnslim.models.train import save_filter

    data = _nnsl_bytes(args.file, args.max_params)
    start = time.perf_counter()
    try:
        model, description = unpack(data, args.trust_factory, max_params=args.max_params)
    except NnslimError as exc:
        raise NnslimError(f"{args.file}: {exc}") from None
    seconds = time.perf_counter() - start
    out = require_writable_dir(args.out, create=True)
    save_filter(model, out / "slim.pt", {"format": "nnslim-filter", "version": 1, **description})
    console.print(f"decoded {args.file} in {seconds * 1000:.1f} ms; wrote {out / 'slim.pt'} and slim.json")
    return {"file": str(args.file), "out": str(out), "decode_seconds": seconds, "description": description}


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    from rich.markup import escape

    from nnslim.bitstream.pack import summary

    data = _nnsl_bytes(args.file, args.max_params)
    try:
        info = summary(data, decode=args.decode, max_params=args.max_params)
    except NnslimError as exc:
        raise NnslimError(f"{args.file}: {exc}") from None
    model = info["model"]
    console.print(
        f"{escape(str(args.file))}: {info['bytes']:,} bytes (header {info['header_bytes']:,}); architecture "
        f"{escape(model['arch']['name'])} {escape(str(model['arch'].get('kwargs', {})))}, "
        f"{len(model.get('layers', {}))} layers changed"
    )
    estimates = ("non-zero", "entropy bytes") if args.decode else ()
    table = Table(title="tensors")
    for column in ("tensor", "shape", "coder", "chunk", *estimates, "settings"):
        table.add_column(column, justify="right" if column in ("chunk", "non-zero", "entropy bytes") else "left")
    for row in info["tensors"]:
        settings = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        if "compression_rate" in row:
            settings += f", r={row['compression_rate']:.1f}"
        figures = (f"{row['nonzero']:,}", f"{row['entropy_bits'] / 8:,.0f}") if args.decode else ()
        cells = (row["name"], "x".join(map(str, row["shape"])), row["coder"], str(row["chunk"]), *figures, settings)
        table.add_row(*map(escape, cells))
    console.print(table)
    for chunk in info["chunks"]:
        if len(chunk["tensors"]) > 1:
            shared = f"chunk {chunk['index']}: {chunk['bytes']:,} bytes for {len(chunk['tensors'])} tensors"
            if args.decode:
                estimate = sum(r["entropy_bits"] for r in info["tensors"] if r["chunk"] == chunk["index"]) / 8
                shared += f" (entropy estimate {estimate:,.0f} bytes)"
            console.print(shared)
    estimate = f"; entropy estimate {info['entropy_bytes']:,.0f} bytes" if args.decode else " (--decode: estimates)"
    console.print(f"payload {info['payload_bytes']:,} bytes{estimate}")
    return {"file": str(args.file), **info}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.bitstream.container import BitstreamError
    from nnslim.evaluate.measure import EvaluateConfig, evaluate
    from nnslim.models.train import load_filter

    original, meta = load_filter(_filter_path(args.original), args.trust_factory)
    if not args.file.is_file():
        raise NnslimError(f"{args.file}: no such file")
    if args.split != "test":
        raise NnslimError(f"evaluate measures on held-out sequences: use --split test, not {args.split!r}")
    training = meta.get("training", {})
    codec = args.codec or training.get("codec", "x265")
    qps = tuple(_int_list(args.qps)) if args.qps else tuple(training.get("qps", ()))
    if not qps:
        raise NnslimError("give --qps")
    for qp in qps:
        get_codec(codec).quantizer(qp)
    sequences = _selected_sequences(args)
    _refuse_training_sequences(meta, sequences)
    if not sequences:
        raise NnslimError(f"no {args.split} sequences in {args.sequences} match the selection")
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    config = EvaluateConfig(
        codec, qps, args.frames, repetitions=args.repetitions, threads=args.threads, max_params=args.max_params
    )
    packed = _nnsl_bytes(args.file, args.max_params)
    with console.status("evaluating") as status:
        try:
            table = evaluate(original, meta, packed, sequences, config, cache, status.update, args.trust_factory)
        except BitstreamError as exc:
            raise NnslimError(f"{args.file}: {exc}") from None
    _print_evaluation(table)
    params = {
        "original": str(args.original),
        "file": str(args.file),
        "codec": codec,
        "qps": list(qps),
        "sequences": [s.name for s in sequences],
        "frames": args.frames,
    }
    run_id = ResultsStore(args.store).record("evaluate", params, table, _model_versions([codec]))
    console.print(f"stored as run {run_id}")
    return {**params, "run_id": run_id, **table}


def _print_evaluation(table: dict[str, Any]) -> None:
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
    both("parameters", lambda s: table["complexity"][s]["parameters"], ",")
    both("kMAC per pixel", lambda s: table["complexity"][s]["kmac_per_pixel"], ".1f")
    both("PyTorch ms per 1080p frame", lambda s: table["runtime"][s]["torch_ms"], ".0f")
    both("ONNX Runtime ms per 1080p frame", lambda s: table["runtime"][s]["onnxruntime_ms"], ".0f")
    both("peak memory filtering 1080p (MiB)", lambda s: table["memory"][s]["peak_rss_mib"], ".0f")
    both("parameter memory (bytes)", lambda s: table["memory"][s]["parameter_bytes"], ",")
    console.print(out)
    console.print(
        f"size ratio {size['ratio']:.1f}x; Y-PSNR loss {perf['loss_db']:+.3f} dB; speedup "
        f"{table['runtime']['speedup_torch']:.2f}x PyTorch, {table['runtime']['speedup_onnxruntime']:.2f}x ONNX Runtime"
    )


def cmd_sweep(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.sweep import space
    from nnslim.sweep.driver import Executor, Tally, run_sweep

    config = space.load(args.sweep)
    if args.threads < 1 or (args.workers is not None and args.workers < 1):
        raise NnslimError("--threads and --workers must be at least 1")
    out = require_writable_dir(args.out, create=True)
    cache = require_writable_dir(args.cache or content.cache_dir() / "encodes", create=True)
    executor = Executor(args.ray, args.workers, args.threads)
    store = ResultsStore(args.store)
    with _progress() as bar:
        task = bar.add_task("preparing", total=None)

        def show(p: Tally) -> None:
            before = f" ({p.skipped} finished before)" if p.skipped else ""
            bar.update(
                task,
                total=p.total - p.skipped,  # the time left is estimated from this run's points only
                completed=p.done + p.failed - p.skipped,
                description=f"done {p.done} · running {p.running} · failed {p.failed}{before}",
            )

        result = run_sweep(
            config, args.sweep, out, executor, cache, store, lambda s: bar.update(task, description=s), show,
            args.retry_failed, args.trust_factory,
        )  # fmt: skip
    _print_sweep(result)
    params = {"sweep": str(args.sweep), "out": str(out), "ray": args.ray, "threads": args.threads}
    summary = {k: result[k] for k in ("points", "finished", "failed", "front", "best", "ran", "skipped")}
    versions = _model_versions(sorted({r["codec"] for r in result["rows"]}))
    result["run_id"] = store.record("sweep", params, summary, versions)
    console.print(
        f"{result['ran']} points run, {result['skipped']} finished before; report: {out / 'report' / 'index.html'}"
    )
    return result


def _print_sweep(result: dict[str, Any]) -> None:
    table = Table(title=f"Pareto front ({len(result['front'])} of {result['finished']} points)")
    columns = ["model", "activation", "energy", "quantizer", "bits", "coder_qp", "bytes", "ms_per_1080p", "loss_db"]
    columns.append("test_loss_db")
    for column in columns:
        table.add_column(column, justify="right")
    for row in result["front"]:
        table.add_row(*(_cell(row[c]) for c in columns))
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


def _demo_step(name: str, argv: list[Any], done: Path) -> None:
    """Run one step of the demo as its own command, unless its JSON shows it finished before."""
    if done.is_file():
        console.print(f"[green]{name}[/green]: finished before, kept {done}")
        return
    console.rule(name)
    status = main([str(a) for a in argv])
    if status == 130:
        raise KeyboardInterrupt
    if status != 0:
        raise NnslimError(f"the demo's {name} step failed (its error is above); run the demo again to resume")


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from nnslim.bitstream.pack import unpack
    from nnslim.evaluate.demo import MODES, build_report, crop_panels
    from nnslim.models.train import load_filter

    mode = MODES["quick" if args.quick else "full" if args.full else "default"]
    out = require_writable_dir(args.out, create=True)
    seqs, model, start = args.sequences, args.model, time.perf_counter()
    frames = ["--frames", str(mode.frames)] if mode.frames else []
    (out / "recipe.toml").write_text(mode.recipe_toml())
    if (Path(seqs) / "sequences.json").is_file():
        console.print(f"[green]sequences[/green]: using those in {seqs}")
    else:
        _demo_step("sequences", ["sequences", "--out", seqs, "--json", out / "sequences.json"], out / "sequences.json")
    _demo_step(
        "codec comparison",
        [
            "codecs",
            "--sequences",
            seqs,
            "--split",
            "test",
            "--max-size",
            "416x240",
            "--codecs",
            mode.codecs,
            *frames,
            "--json",
            out / "codecs.json",
        ],
        out / "codecs.json",
    )
    common = ["--sequences", seqs, "--max-size", "416x240"]
    trust = ["--trust-factory", args.trust_factory] if args.trust_factory else []
    _demo_step(
        "compress (full recipe)",
        [
            "compress",
            model,
            "--recipe",
            out / "recipe.toml",
            "--max-loss",
            "0.05",
            "--out",
            out / "compress",
            *common,
            *trust,
            "--json",
            out / "compress.json",
        ],
        out / "compress.json",
    )
    _demo_step(
        "pack (nnr, QP searched within 0.02 dB)",
        [
            "pack",
            out / "compress",
            "--coder",
            "nnr",
            "--dependent",
            "--max-loss",
            "0.02",
            *common,
            *trust,
            *frames,
            "--out",
            out / "slim.nnsl",
            "--json",
            out / "pack.json",
        ],
        out / "pack.json",
    )
    _demo_step(
        "unpack",
        ["unpack", out / "slim.nnsl", "--out", out / "decoded", *trust, "--json", out / "unpack.json"],
        out / "unpack.json",
    )
    _demo_step(
        "evaluate",
        [
            "evaluate",
            model,
            out / "slim.nnsl",
            *common,
            *trust,
            *frames,
            "--repetitions",
            str(mode.repetitions),
            "--json",
            out / "evaluate.json",
        ],
        out / "evaluate.json",
    )
    shipped = args.shipped or Path(model).with_suffix(".bbc.nnsl")
    if shipped.is_file():
        _demo_step(
            "evaluate the shipped slim filter (full-length bbc recipe)",
            [
                "evaluate",
                model,
                shipped,
                *common,
                *trust,
                *frames,
                "--repetitions",
                str(mode.repetitions),
                "--json",
                out / "evaluate_shipped.json",
            ],
            out / "evaluate_shipped.json",
        )
    else:
        console.print(f"[yellow]no shipped slim filter at {shipped}; the report shows this run's only[/yellow]")
    console.rule("report")
    original, meta = load_filter(model, args.trust_factory)
    decoded, _ = unpack((out / "slim.nnsl").read_bytes(), args.trust_factory)
    test = list(content.select(content.load_manifest(seqs), "test", None, parse_size("416x240")))
    cache = content.cache_dir() / "encodes"
    crops = crop_panels(original, decoded, test[0], meta["training"]["codec"], max(meta["training"]["qps"]), cache)
    lowrank = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "lowrank_table.json"
    page = build_report(out, f"nnslim demo ({mode.name})", crops, lowrank, mode.cuts())
    seconds = time.perf_counter() - start
    params = {"out": str(out), "mode": mode.name, "model": str(model), "sequences": str(seqs)}
    results = {"seconds": seconds, "report": str(page), "evaluation": json.loads((out / "evaluate.json").read_text())}
    run_id = ResultsStore(args.store).record("demo", params, results, _model_versions(["x265"]))
    console.print(f"report: {page} (run {run_id}, {seconds / 60:.1f} min)")
    return {"run_id": run_id, **params, "seconds": seconds, "report": str(page)}


def cmd_report(args: argparse.Namespace) -> dict[str, Any]:
    from nnslim.evaluate.demo import MODES, build_report

    run = ResultsStore(args.store).run(args.run_id)
    if run.kind != "demo":
        raise NnslimError(f"run {run.id} is a {run.kind} run; reports are drawn from demo runs")
    out = Path(run.params["out"])
    if not (out / "evaluate.json").is_file():
        raise NnslimError(f"{out} no longer holds run {run.id}'s results")
    lowrank = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "lowrank_table.json"
    cuts = MODES[run.params["mode"]].cuts()
    page = build_report(out, f"nnslim demo ({run.params['mode']}), run {run.id}", None, lowrank, cuts)
    console.print(f"report: {page}")
    return {"run_id": run.id, "report": str(page)}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(prog="nnslim", description="Make CNN video coding tools small and fast, measured on real codecs.")
    parser.add_argument("--version", action="version", version=f"nnslim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, store: bool = True) -> None:
        p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
        if store:
            p.add_argument("--store", type=Path, help="results store (SQLite) instead of the default one")

    def limit(p: argparse.ArgumentParser) -> None:
        """Every command that reads an .nnsl file: the most parameters it builds."""
        p.add_argument(
            "--max-params", type=int, default=DEFAULT_MAX_PARAMS, metavar="N", help="refuse filters of more parameters"
        )

    def trust(p: argparse.ArgumentParser) -> None:
        """Every command that builds a filter from a file: the one user architecture it may build."""
        p.add_argument(
            "--trust-factory",
            metavar="FILE.py:FACTORY",
            help="build this user architecture when a filter file names it (building runs its code); "
            "files naming any other user factory are refused",
        )

    p = sub.add_parser("sequences", help="build the default test sequences, or add your own")
    p.add_argument("--out", type=Path, required=True, help="sequence folder (created if missing)")
    p.add_argument("--only", help="build only these default sequences (comma-separated names)")
    p.add_argument("--add", type=Path, action="append", help="add a .yuv, .y4m or .mp4 file (repeatable)")
    p.add_argument("--split", default="test", choices=content.SPLITS, help="split of added files")
    p.add_argument("--size", help="WxH of an added .yuv whose name does not say it")
    p.add_argument("--fps", type=float, help="frame rate of added files")
    p.add_argument("--name", help="name of the added file in the manifest")
    common(p, store=False)
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
    common(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("codecs", help="compare codecs on a sequence folder")
    p.add_argument("--sequences", type=Path, required=True, help="folder with sequences.json")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codec names")
    p.add_argument("--qps", default="22,27,32,37", help="comma-separated ladder QPs")
    p.add_argument("--frames", type=int, help="frames per sequence (all by default)")
    p.add_argument("--split", default="test", help="split to use (train or test; empty for all)")
    p.add_argument("--names", help="only these sequences (comma-separated)")
    p.add_argument("--max-size", help="skip sequences larger than WxH")
    p.add_argument("--anchor", help="codec the BD-rates and time ratios refer to (x264 if compared)")
    p.add_argument("--preset", action="append", default=[], help="CODEC=PRESET (repeatable)")
    p.add_argument("--cache", type=Path, help="folder of finished encodes (resume)")
    p.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    p.add_argument("--plot", type=Path, help="write rate-distortion curves to this PNG")
    common(p)
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("train", help="train a filter on decoded frames of the train split")
    p.add_argument("--arch", required=True, help="postfilter, vrcnn, inloop, or FILE.py:FACTORY / module:FACTORY")
    p.add_argument("--arch-args", help="JSON keyword arguments of the architecture, e.g. '{\"qp_input\": true}'")
    p.add_argument("--codec", default="x265", help="codec whose output the filter restores")
    p.add_argument("--qp", default="37", help="ladder QP(s) of the training encodes, comma-separated")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--validation", default="Motorcycle", help="train-split sequences held out for validation")
    p.add_argument("--train", help="train on these train-split sequences only (all but --validation by default)")
    p.add_argument("--init", type=Path, help="start from this filter's weights (fine-tune) instead of random ones")
    p.add_argument("--out", type=Path, required=True, help="filter file to write (.pt, with .json beside it)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="mse", help="mse or l1")
    p.add_argument("--margin", type=int, default=0, help="patch-edge pixels left out of the loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--threads", type=int, help="CPU threads (all cores by default)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    common(p, store=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("filter", help="apply a trained filter to a decoded .yuv")
    p.add_argument("model", type=Path, help="filter file (.pt with its .json beside it)")
    p.add_argument("--input", type=Path, required=True, help="decoded 8-bit 4:2:0 .yuv")
    p.add_argument("--reference", type=Path, help="original .yuv, for PSNR before and after")
    p.add_argument("--size", help="WxH, unless the file names say it")
    p.add_argument("--out", type=Path, required=True, help="filtered .yuv to write")
    p.add_argument("--qp", type=int, help="QP of the decoded video (for filters trained on several QPs)")
    p.add_argument("--tile", type=int, default=256, help="tile side in pixels")
    p.add_argument("--overlap", type=int, default=16, help="context pixels around each tile")
    trust(p)
    common(p, store=False)
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("assess", help="measure a filter's gain over the codec on held-out sequences")
    p.add_argument("model", type=Path, help="filter file (.pt with its .json beside it)")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--split", default="test", help="split to measure on")
    p.add_argument("--names", help="only these sequences (comma-separated)")
    p.add_argument("--max-size", help="skip sequences larger than WxH")
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qps", default="37", help="comma-separated ladder QPs (four or more give a BD-rate)")
    p.add_argument("--frames", type=int, help="first N frames of each sequence")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    trust(p)
    common(p, store=False)
    p.set_defaults(func=cmd_assess)

    p = sub.add_parser("compress", help="prune, split and quantize a filter by a recipe")
    p.add_argument("model", type=Path, help="filter file (.pt with its .json beside it)")
    p.add_argument("--recipe", default="bbc", help="bbc, deep-compression, lowrank, full, or a TOML file")
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qp", help="QP(s), comma-separated (the filter's training QPs by default)")
    p.add_argument("--max-loss", type=float, default=0.05, help="Y-PSNR loss budget in dB (on validation)")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun resumes what it finished")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--max-size", default="416x240", help="test sequences up to WxH are reported at each step")
    p.add_argument("--no-timing", action="store_true", help="skip the 1080p frame timing at each step")
    p.add_argument("--threads", type=int, help="CPU threads (all cores by default)")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    trust(p)
    common(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("pack", help="code a filter into an .nnsl file")
    p.add_argument("model", type=Path, help="filter file (.pt with .json), or a compress output folder")
    p.add_argument("--coder", default="nnr", help="nnr, huffman or raw")
    p.add_argument("--qp", type=int, default=-32, help="NNR QP of weights (+4 doubles the step)")
    p.add_argument("--nonweight-qp", type=int, default=-64, help="NNR QP of biases and other 1-D tensors")
    p.add_argument("--dependent", action="store_true", help="NNR dependent (trellis) quantization")
    p.add_argument("--lossless", action="store_true", help="NNR: code weight-shared tensors exactly")
    p.add_argument("--bits", type=int, default=6, help="huffman: k-means to 2**bits shared values")
    p.add_argument("--index-bits", type=int, default=8, help="huffman: bits of a relative index")
    p.add_argument("--raw-dtype", default="float32", help="raw tensors as float32 or float16")
    p.add_argument(
        "--tensor-coder", action="append", default=[], metavar="NAME=CODER", help="another coder for one tensor"
    )
    p.add_argument(
        "--max-loss", type=float, help="the coarsest NNR QP within this Y-PSNR loss (dB) on validation; test reported"
    )
    p.add_argument("--against", type=Path, help="measure the loss and the size against this filter (the original)")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--max-size", default="416x240", help="test sequences up to WxH report the chosen file's loss")
    p.add_argument("--frames", type=int, help="first N frames of each sequence measure the loss")
    p.add_argument("--frame-step", type=int, default=16, help="every Nth of those frames measures the loss")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    p.add_argument("--out", type=Path, required=True, help=".nnsl file to write")
    trust(p)
    common(p, store=False)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("unpack", help="decode an .nnsl file into a filter file")
    p.add_argument("file", type=Path, help=".nnsl file")
    p.add_argument("--out", type=Path, required=True, help="folder for slim.pt and slim.json")
    trust(p)
    limit(p)
    common(p, store=False)
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("inspect", help="show what an .nnsl file holds (header and tables; nothing is built)")
    p.add_argument("file", type=Path, help=".nnsl file")
    p.add_argument("--decode", action="store_true", help="also decode the tensors: non-zero counts, entropy estimates")
    limit(p)
    common(p, store=False)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("evaluate", help="the evaluation table of an original filter and its .nnsl file")
    p.add_argument("original", type=Path, help="the uncompressed filter file")
    p.add_argument("file", type=Path, help="the .nnsl file (its decoded filter is measured)")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--split", default="test", help="split to measure on (test)")
    p.add_argument("--names", help="only these sequences (comma-separated)")
    p.add_argument("--max-size", default="416x240", help="skip sequences larger than WxH")
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qps", help="comma-separated ladder QPs (the filter's by default; four or more give BD-rates)")
    p.add_argument("--frames", type=int, help="first N frames of each sequence")
    p.add_argument("--repetitions", type=int, default=5, help="timed 1080p frames per filter and runtime, in turns")
    p.add_argument("--threads", type=int, help="CPU threads for the timings (every core by default)")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    trust(p)
    limit(p)
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="the main job: codecs, compress, pack, evaluate, and a report")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder; a rerun resumes")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="sequence folder (built if missing)")
    p.add_argument("--model", type=Path, default=Path("models/postfilter_x265_qp22-37.pt"), help="filter to compress")
    p.add_argument(
        "--shipped", type=Path, help="a slim .nnsl of the model, evaluated beside this run's (default MODEL.bbc.nnsl)"
    )
    trust(p)
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="fewer codecs, frames and retraining steps")
    speed.add_argument("--full", action="store_true", help="the full recipe and all frames (hours on a CPU)")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sweep", help="compress, pack and evaluate every point of a sweep file; Pareto front")
    p.add_argument("sweep", type=Path, help="sweep file (TOML)")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun runs only the missing points")
    p.add_argument("--ray", metavar="ADDRESS", help="run on Ray: local (start one here), auto, or HOST:PORT")
    p.add_argument("--workers", type=int, help="local pool size (as many points as fit on the cores by default)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per point")
    p.add_argument("--retry-failed", action="store_true", help="run failed points again")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    trust(p)
    common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="render a stored demo run's report again")
    p.add_argument("run_id", type=int, help="run id (see nnslim runs)")
    common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list the runs in the results store")
    p.add_argument("--kind", help="only runs of this kind (encode, codecs, compress, evaluate, ...)")
    p.add_argument("--compare", type=int, nargs=2, metavar=("A", "B"), help="two runs side by side (differences)")
    common(p)
    p.set_defaults(func=cmd_runs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        result = args.func(args)
        _write_json(args.json, result)
    except NnslimError as exc:
        print(f"nnslim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnslim: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    return 0
