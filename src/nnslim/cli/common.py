"""What every command group shares: the console, one-line parse errors, progress and the common flags."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nnslim.bitstream.container import DEFAULT_MAX_PARAMS
from nnslim.errors import NnslimError
from nnslim.jobs.common import Progress as JobProgress

console = Console()


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other nnslim error."""

    def error(self, message: str) -> NoReturn:
        raise NnslimError(message)


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise NnslimError(f"expected comma-separated integers, got {text!r}") from None


def name_list(text: str | None) -> tuple[str, ...]:
    """Comma-separated names (none for None or an empty string)."""
    return tuple(v.strip() for v in (text or "").split(",") if v.strip())


def fmt(value: float | None, digits: int, signed: bool = False) -> str:
    """A number for a table, ``n/a`` when missing."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell(value: Any) -> str:
    """Any value for a table cell."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def bar() -> Progress:
    """A progress bar for work counted in steps."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@contextmanager
def spinner(text: str) -> Iterator[JobProgress]:
    """A spinner showing a job's status, its notes printed above it."""
    with console.status(text) as status:
        yield JobProgress(status=status.update, note=console.print)


class DeprecatedAlias(argparse.Action):
    """An old flag that still works, saying which flag replaces it."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        print(f"nnslim: warning: {option} is deprecated; use {self.help}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, kind: type = str) -> None:
    """Accept ``old`` as a deprecated spelling of ``new``."""
    p.add_argument(old, dest=dest, type=kind, action=DeprecatedAlias, help=new)


def add_json(p: argparse.ArgumentParser, store: bool = True) -> None:
    """``--json`` (and ``--store`` for commands that record runs)."""
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    if store:
        p.add_argument("--store", type=Path, help="results store (SQLite) instead of the default one")


def add_limit(p: argparse.ArgumentParser) -> None:
    """Every command that reads an .nnsl file: the most parameters it builds."""
    p.add_argument(
        "--max-params", type=int, default=DEFAULT_MAX_PARAMS, metavar="N", help="refuse filters of more parameters"
    )


def add_trust(p: argparse.ArgumentParser) -> None:
    """Every command that builds a filter from a file: the one user architecture it may build."""
    p.add_argument(
        "--trust-factory",
        metavar="FILE.py:FACTORY",
        help="build this user architecture when a filter file names it (building runs its code); "
        "files naming any other user factory are refused",
    )


def add_selection(p: argparse.ArgumentParser, max_size: str | None, split: str = "test") -> None:
    """The sequence folder, split, names, size limit and encode cache of commands that measure."""
    p.add_argument("--sequences", type=Path, default=Path("data/sequences"), help="folder with sequences.json")
    p.add_argument("--split", default=split, help="split to measure on")
    p.add_argument("--names", help="only these sequences (comma-separated)")
    p.add_argument("--max-size", default=max_size, help="skip sequences larger than WxH")
    p.add_argument("--cache", type=Path, help="folder of finished encodes")


Subparsers = Any
