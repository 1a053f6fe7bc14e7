"""Commands about `.nnsl` files: pack, unpack, inspect."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from nnslim.bitstream.pack import PackConfig
from nnslim.cli.common import Subparsers, add_json, add_limit, add_trust, alias, console, spinner
from nnslim.errors import NnslimError
from nnslim.jobs import pack


def _coder_overrides(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        name, sep, coder = item.partition("=")
        if not sep or not name or not coder:
            raise NnslimError(f"--tensor-coder takes NAME=CODER, got {item!r}")
        overrides[name] = coder
    return overrides


def cmd_pack(args: argparse.Namespace) -> dict[str, Any]:
    config = PackConfig(
        coder=args.coder, nnr_qp=args.nnr_qp, nonweight_qp=args.nonweight_qp, dependent=args.dependent,
        lossless=args.lossless, bits=args.bits, index_bits=args.index_bits, raw_dtype=args.raw_dtype,
        coders=_coder_overrides(args.tensor_coder),
    )  # fmt: skip
    request = pack.PackRequest(
        args.model, args.out, config, args.max_loss, args.against, args.sequences, args.max_size, args.frames,
        args.frame_step, args.cache, args.trust_factory,
    )  # fmt: skip
    with spinner("packing") as progress:
        result = pack.pack_file(request, progress)
    of = f"the fp32 size of {args.against.name}" if args.against else "its fp32 size"
    console.print(
        f"{args.out}: {result.bytes:,} bytes, {result.percent_of_fp32:.2f}% of {of}, in {result.seconds:.2f} s"
    )
    return result.to_json()


def cmd_unpack(args: argparse.Namespace) -> dict[str, Any]:
    result = pack.unpack_file(pack.UnpackRequest(args.file, args.out, args.max_params, args.trust_factory))
    ms = result.decode_seconds * 1000
    console.print(f"decoded {args.file} in {ms:.1f} ms; wrote {result.out / 'slim.pt'} and slim.json")
    return result.to_json()


def cmd_inspect(args: argparse.Namespace) -> dict[str, Any]:
    info = pack.inspect_file(args.file, args.decode, args.max_params).to_json()
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
    return info


def register(sub: Subparsers) -> None:
    """Add pack, unpack and inspect."""
    p = sub.add_parser("pack", help="code a filter into an .nnsl file")
    p.add_argument("model", type=Path, help="filter file (.pt with .json), or a compress output folder")
    p.add_argument("--coder", default="nnr", help="nnr, huffman or raw")
    p.add_argument(
        "--nnr-qp",
        type=int,
        default=-32,
        help="NNR quantization parameter of weights (+4 doubles the step)",
    )
    alias(p, "--qp", "--nnr-qp", "nnr_qp", int)
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
    add_trust(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("unpack", help="decode an .nnsl file into a filter file")
    p.add_argument("file", type=Path, help=".nnsl file")
    p.add_argument("--out", type=Path, required=True, help="folder for slim.pt and slim.json")
    add_trust(p)
    add_limit(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_unpack)

    p = sub.add_parser("inspect", help="show what an .nnsl file holds (header and tables; nothing is built)")
    p.add_argument("file", type=Path, help=".nnsl file")
    p.add_argument("--decode", action="store_true", help="also decode the tensors: non-zero counts, entropy estimates")
    add_limit(p)
    add_json(p, store=False)
    p.set_defaults(func=cmd_inspect)
