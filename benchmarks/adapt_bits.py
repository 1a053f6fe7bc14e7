"""What the update's bytes cost on the test split, from the trials that ``benchmarks/adapt.py`` recorded.

For every row (sequence and QP) of ``benchmarks/results/adapt.json``, the encoder recorded each
NNR QP it tried with its bytes and its SSE on every n-th frame (``rd_frame_step``). From them,
each filter's mean BD-rate of switch + update against x265 alone is recomputed three ways:

- ``measured``: as sent (it equals ``bd_rate_adapted``);
- ``bits_free``: the update and the flags cost no bytes, and the update is sent at the NNR QP
  of least SSE. Its Y-PSNR is the sent one plus ``10 log10(SSE sent / SSE least)``, from the
  trials' SSE: an estimate of what the trained updates would give if their bytes were free;
- ``fewer_bytes``: each sent update ``n`` bytes shorter, for each ``n`` of ``SAVED``: what
  shortening its NNR unit header would give, the choices unchanged.

Prints a table and writes benchmarks/results/adapt_bits.json; it runs in seconds.

    .venv/bin/python benchmarks/adapt_bits.py
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nnslim.io import atomic_write_json
from nnslim.jobs.adapt import bd_between, mean_finite

SAVED = (5, 10, 15)
"""Bytes taken off each sent update in ``fewer_bytes``."""

Change = Callable[[dict[str, Any]], dict[str, Any]]
"""A row with its ``kbps_adapted`` and ``psnr_y_adapted`` recomputed."""


def measured(row: dict[str, Any]) -> dict[str, Any]:
    """The row as sent."""
    return row


def bits_free(row: dict[str, Any]) -> dict[str, Any]:
    """The row with a free update at its NNR QP of least SSE, and free flags."""
    sent = next(t for t in row["trials"] if t["nnr_qp"] == row["nnr_qp"])
    best = min(row["trials"], key=lambda t: t["sse"])
    psnr = row["psnr_y_adapted"] + 10 * math.log10(sent["sse"] / best["sse"])
    return row | {"kbps_adapted": row["kbps"], "psnr_y_adapted": psnr}


def fewer_bytes(saved: int) -> Change:
    """The row with ``saved`` bytes fewer when an update was sent."""

    def change(row: dict[str, Any]) -> dict[str, Any]:
        sent = row["update_bytes"] - (saved if row["nnr_qp"] is not None else 0)
        return row | {"kbps_adapted": row["kbps"] * (row["video_bytes"] + sent) / row["video_bytes"]}

    return change


def mean_bd_rate(rows: list[dict[str, Any]], change: Change) -> float:
    """The mean over sequences of the changed rows' BD-rate of switch + update against the codec alone."""
    sequences: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        sequences.setdefault(row["sequence"], []).append(change(row))
    return mean_finite([bd_between(changed, "adapted") for changed in sequences.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/adapt.json"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/adapt_bits.json"))
    args = parser.parse_args()
    filters = json.loads(args.results.read_text())["filters"]
    table = Table(title="Mean BD-rate of switch + update against x265 alone (test split)")
    for column in ("filter", "base filter", "measured", "bits free", *(f"{n} bytes fewer" for n in SAVED)):
        table.add_column(column, justify="left" if column == "filter" else "right", no_wrap=column == "filter")
    document: dict[str, Any] = {"command": "benchmarks/adapt_bits.py", "results": str(args.results), "filters": {}}
    for name, result in filters.items():
        rows = result["rows"]
        entry = {
            "bd_rate_base": result["mean"]["bd_rate_base"],
            "measured": mean_bd_rate(rows, measured),
            "bits_free": mean_bd_rate(rows, bits_free),
            "fewer_bytes": {str(n): mean_bd_rate(rows, fewer_bytes(n)) for n in SAVED},
        }
        document["filters"][name] = entry
        cells = [entry["bd_rate_base"], entry["measured"], entry["bits_free"], *entry["fewer_bytes"].values()]
        table.add_row(name, *(f"{value:+.2f}%" for value in cells))
    Console(width=120).print(table)
    atomic_write_json(args.json, document)
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
