"""Commands about one filter: train, filter, assess."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rich.table import Table

from nnslim.cli.common import (
    Subparsers,
    add_json,
    add_selection,
    add_trust,
    bar,
    console,
    fmt,
    int_list,
    name_list,
    spinner,
)
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import RUNTIMES
from nnslim.jobs import assess, train
from nnslim.models.filters import ArchSpec
from nnslim.models.train import TrainConfig


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    try:
        kwargs = json.loads(args.arch_args) if args.arch_args else {}
    except json.JSONDecodeError as exc:
        raise NnslimError(f"--arch-args is not JSON: {exc}") from None
    settings = TrainConfig(
        arch=ArchSpec(args.arch, kwargs), codec=args.codec, qps=int_list(args.qp), steps=args.steps,
        batch=args.batch, patch=args.patch, lr=args.lr, loss=args.loss, margin=args.margin, seed=args.seed,
        checkpoint_every=args.checkpoint_every, threads=args.threads,
    )  # fmt: skip
    request = train.TrainRequest(
        settings, args.out, args.sequences, name_list(args.validation), name_list(args.train), args.init,
        args.resume, args.cache,
    )  # fmt: skip
    with bar() as progress:
        task = progress.add_task("encoding the training sequences", total=settings.steps)

        def step(done: int, loss: float, report: dict[str, float] | None) -> None:
            text = f"training, loss {loss:.2e}"
            if report:
                text += f", validation gain {report['gain_db']:+.3f} dB"
                console.print(
                    f"step {done}: loss {loss:.3e}, validation Y-PSNR {report['psnr_y_codec']:.3f} -> "
                    f"{report['psnr_y_filtered']:.3f} dB ({report['gain_db']:+.3f})"
                )
            progress.update(task, completed=done, description=text)

        trained = train.train(request, step)
    console.print(f"filter written to {trained.out} and {trained.out.with_suffix('.json')}")
    return trained.to_json()


def cmd_filter(args: argparse.Namespace) -> dict[str, Any]:
    request = train.FilterRequest(
        args.model, args.input, args.out, args.reference, args.size, args.qp, args.tile, args.overlap,
        args.trust_factory, args.update, args.runtime,
    )  # fmt: skip
    with bar() as progress:
        task = progress.add_task("filtering", total=None)
        filtered = train.apply(request, on_frame=lambda: progress.advance(task))
    result = filtered.to_json()
    if result.get("psnr_before") is not None:
        before, after = result["psnr_before"], result["psnr_after"]
        console.print(
            "Y/U/V PSNR before {:.3f}/{:.3f}/{:.3f} dB, after {:.3f}/{:.3f}/{:.3f} dB (Y {:+.3f} dB)".format(
                before["y"], before["u"], before["v"], after["y"], after["u"], after["v"], after["y"] - before["y"]
            )
        )
    console.print(f"filtered {filtered.frames} frames into {args.out}; peak memory {result['peak_rss_mib']:.0f} MiB")
    return result


def cmd_assess(args: argparse.Namespace) -> dict[str, Any]:
    request = assess.AssessRequest(
        args.model, args.sequences, int_list(args.qps), args.codec, args.split, name_list(args.names),
        args.max_size, args.frames, args.cache, args.trust_factory,
    )  # fmt: skip
    with spinner("measuring") as progress:
        result = assess.assess(request, progress)
    table = Table(title=f"{args.model.name} on {result.codec}, {args.split} split")
    for column in ("sequence", "QP", "kbps", "Y-PSNR codec", "Y-PSNR filtered", "gain dB"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    for row in result.gain["rows"]:
        table.add_row(
            row["sequence"], str(row["qp"]), fmt(row["kbps"], 1), fmt(row["psnr_y_codec"], 3),
            fmt(row["psnr_y_filtered"], 3), fmt(row["gain_db"], 3, signed=True),
        )  # fmt: skip
    console.print(table)
    bd = result.mean_bd_rate
    bd_text = "n/a (needs four QPs or more)" if math.isnan(bd) else f"{bd:+.2f}%"
    console.print(f"mean gain {result.mean_gain_db:+.3f} dB; BD-rate {bd_text}")
    return result.to_json()


def register(sub: Subparsers) -> None:
    """Add train, filter and assess."""
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
    add_json(p, store=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("filter", help="apply a trained filter to a decoded .yuv")
    p.add_argument(
        "model", type=Path, help="filter file (.pt with its .json beside it), .nnsl file, or .onnx from nnslim deploy"
    )
    p.add_argument("--update", type=Path, help="content-adaptive update (.nnsu) of this filter for this video")
    p.add_argument("--runtime", choices=RUNTIMES, help="torch or onnxruntime for a filter; an .onnx file's own")
    p.add_argument("--input", type=Path, required=True, help="decoded 8-bit 4:2:0 .yuv")
    p.add_argument("--reference", type=Path, help="original .yuv, for PSNR before and after")
    p.add_argument("--size", help="WxH, unless the file names say it")
    p.add_argument("--out", type=Path, required=True, help="filtered .yuv to write")
    p.add_argument("--qp", type=int, help="QP of the decoded video (for filters trained on several QPs)")
    p.add_argument("--tile", type=int, help="tile side in pixels (256; a whole frame for onnxruntime_int8)")
    p.add_argument("--overlap", type=int, default=16, help="context pixels around each tile")
    add_trust(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_filter)

    p = sub.add_parser("assess", help="measure a filter's gain over the codec on held-out sequences")
    p.add_argument("model", type=Path, help="filter file (.pt with its .json beside it)")
    add_selection(p, None)
    p.add_argument("--codec", help="codec (the one the filter was trained on by default)")
    p.add_argument("--qps", default="37", help="comma-separated ladder QPs (four or more give a BD-rate)")
    p.add_argument("--frames", type=int, help="first N frames of each sequence")
    add_trust(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_assess)
