"""The adapt command: per-sequence updates and the switch, NNR-coded, their bits counted."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from nnslim.adapt.encoder import AdaptConfig
from nnslim.adapt.params import MODES
from nnslim.cli.common import Subparsers, add_json, add_selection, add_trust, console, fmt, int_list, name_list, spinner
from nnslim.jobs import adapt

_CURVES = ("bd_rate_base", "bd_rate_switch", "bd_rate_adapted")


def _percent(value: float, signed: bool = False) -> str:
    text = fmt(value, 2, signed)
    return text if text == "n/a" else text + "%"


def cmd_adapt(args: argparse.Namespace) -> dict[str, Any]:
    config = AdaptConfig(
        mode=args.adapt, switch=args.switch, per_qp=args.per_qp, block=args.block, steps=args.steps, lr=args.lr,
        batch=args.batch, patch=args.patch, nnr_qps=int_list(args.nnr_qps), lambda_scale=args.lambda_scale,
        threads=args.threads,
    )  # fmt: skip
    request = adapt.AdaptRequest(
        args.model, args.out, args.sequences, config, args.split, name_list(args.names), args.codec,
        int_list(args.qps) if args.qps else (), args.max_size, args.frames, args.cache, args.trust_factory,
        args.ray, args.workers,
    )  # fmt: skip
    with spinner("adapting") as progress:
        result = adapt.adapt(request, progress)
    table = Table(title=f"{args.model.name}: BD-rate against {args.codec or 'the codec'} alone, bits counted")
    for column in ("sequence", "base filter", "switch", "switch + update", "update vs base", "update share"):
        table.add_column(column, justify="left" if column == "sequence" else "right")
    share = "update_share_top_qp"
    for p in [*result.per_sequence, {"sequence": "mean", **result.mean, share: result.mean["update_share_qp37"]}]:
        table.add_row(
            p["sequence"],
            *(_percent(p[k], signed=True) for k in (*_CURVES, "bd_rate_adapted_vs_base")),
            _percent(100 * p[share]),
        )  # fmt: skip
    console.print(table)
    console.print(f"updates written to {result.out} in {result.seconds:.0f} s")
    return result.to_json()


def register(sub: Subparsers) -> None:
    """Add adapt."""
    p = sub.add_parser("adapt", help="adapt a filter to each sequence: NNR-coded update and switch, bits counted")
    p.add_argument("model", type=Path, help="base filter: a filter file (.pt) or an .nnsl file")
    p.add_argument("--adapt", default=AdaptConfig.mode, choices=MODES, help="what adapts (chosen on validation)")
    p.add_argument("--switch", action=argparse.BooleanOptionalAction, default=True, help="per-block on/off flags")
    p.add_argument(
        "--per-qp",
        action=argparse.BooleanOptionalAction,
        default=AdaptConfig.per_qp,
        help="one update per coding QP (--steps each) instead of one for all QPs",
    )
    p.add_argument("--block", type=int, default=AdaptConfig.block, help="the switch's block side in luma samples")
    p.add_argument("--steps", type=int, default=AdaptConfig.steps, help="fine-tuning steps per update")
    p.add_argument("--lr", type=float, default=AdaptConfig.lr, help="fine-tuning learning rate")
    p.add_argument("--batch", type=int, default=AdaptConfig.batch, help="patches per fine-tuning step")
    p.add_argument("--patch", type=int, default=AdaptConfig.patch, help="side of those patches in luma samples")
    p.add_argument("--nnr-qps", default=",".join(map(str, AdaptConfig.nnr_qps)), help="NNR QPs the update may take")
    p.add_argument("--lambda-scale", type=float, default=AdaptConfig.lambda_scale, help="times HM's lambda")
    p.add_argument("--codec", help="codec (the filter's own by default)")
    p.add_argument("--qps", help="coding QPs, comma-separated (the filter's own by default)")
    p.add_argument("--frames", type=int, help="first frames of each sequence (all by default)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per sequence")
    p.add_argument("--ray", metavar="ADDRESS", help="run the sequences on Ray: local, auto, or HOST:PORT")
    p.add_argument("--workers", type=int, help="local pool size (as many sequences as fit on the cores by default)")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun skips finished sequences")
    add_selection(p, "416x240")
    add_trust(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_adapt)
