"""The deploy command: a filter as an int8 ONNX model for ONNX Runtime, its loss measured on validation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nnslim.cli.common import Subparsers, add_json, add_trust, console, spinner
from nnslim.deploy.qat import QatConfig
from nnslim.deploy.quantize import CALIBRATIONS, DeployConfig
from nnslim.jobs import deploy


def cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    config = DeployConfig(
        max_loss_db=args.max_loss, float_fallback=args.float_fallback, calibration_tiles=args.calibration_tiles,
        frame_step=args.frame_step, threads=args.threads, calibration=args.calibration,
        qat=QatConfig(steps=args.qat_steps, lr=args.qat_lr),
    )  # fmt: skip
    request = deploy.DeployRequest(
        args.model, args.out, args.sequences, config, args.frames, args.cache, args.trust_factory, args.against
    )
    with spinner("deploying") as progress:
        result = deploy.deploy(request, progress)
    share = 100 * result.bytes / result.deployment.float_bytes
    validation = ", ".join(result.validation_sequences)
    reference = args.against.name if args.against else "the float filter"
    console.print(
        f"{args.out}: {result.bytes:,} bytes ({share:.1f}% of the float ONNX model), Y-PSNR loss "
        f"{result.loss_db:+.3f} dB against {reference} on validation ({validation}), in {result.seconds:.0f} s"
    )
    return result.to_json()


def register(sub: Subparsers) -> None:
    """Add deploy."""
    p = sub.add_parser("deploy", help="quantize a filter to an int8 ONNX model for ONNX Runtime, within a loss budget")
    p.add_argument("model", type=Path, help="filter file (.pt with .json), a compress output folder, or an .nnsl file")
    p.add_argument("--out", type=Path, required=True, help=".onnx file to write")
    p.add_argument(
        "--max-loss", type=float, default=DeployConfig.max_loss_db, help="the most Y-PSNR (dB) int8 may lose"
    )
    p.add_argument("--against", type=Path, help="measure the loss against this filter (the original of a slim one)")
    p.add_argument(
        "--float-fallback",
        action="store_true",
        help="keep float the nodes ONNX Runtime cannot run in int8, and those that lose most, instead of refusing",
    )
    p.add_argument(
        "--calibration-tiles", type=int, default=DeployConfig.calibration_tiles, help="training tiles to calibrate on"
    )
    p.add_argument(
        "--calibration",
        choices=sorted(CALIBRATIONS),
        default=DeployConfig.calibration,
        help="activation ranges from the extremes or from the 0.001-99.999 percentiles",
    )
    p.add_argument(
        "--qat-steps",
        type=int,
        default=QatConfig.steps,
        help="fine-tune with int8 rounding for N steps on the training split first (none by default)",
    )
    p.add_argument("--qat-lr", type=float, default=QatConfig.lr, help="learning rate of that fine-tuning")
    p.add_argument("--frames", type=int, help="first N frames of each validation sequence (all by default)")
    p.add_argument(
        "--frame-step", type=int, default=DeployConfig.frame_step, help="every Nth of those frames measures the loss"
    )
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (every core by default)")
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")
    add_trust(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_deploy)
