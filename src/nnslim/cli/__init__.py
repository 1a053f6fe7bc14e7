"""The ``nnslim`` command line: parse, call a job, print its result, and write it as JSON when asked."""

from __future__ import annotations

import argparse
import sys

from nnslim import __version__
from nnslim.cli import adapt, bitstream, compress, deploy, evaluate, models, video
from nnslim.cli.common import Parser, console
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_json, require_writable_file

GROUPS = (video, models, compress, bitstream, adapt, evaluate, deploy)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = Parser(prog="nnslim", description="Make CNN video coding tools small and fast, measured on real codecs.")
    parser.add_argument("--version", action="version", version=f"nnslim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        if args.json:
            require_writable_file(args.json, create=True)
        result = args.func(args)
        if args.json:
            atomic_write_json(args.json, result)
            console.print(f"JSON written to {args.json}")
    except NnslimError as exc:
        print(f"nnslim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnslim: interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
    return 0
