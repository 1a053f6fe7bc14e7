"""Content adaptation on the test split: the shipped multi-QP post-filter and its slim .nnsl, bits counted.

For each filter, ``nnslim adapt`` runs on every test sequence up to 416x240 (all frames, x265,
QP 22 to 37) with the settings fixed on the validation sequence (``AdaptConfig``'s defaults, see
the README). Each sequence is measured four ways, each BD-rate against x265 alone with every
bit the decoder needs counted: the base filter as it is, the switch alone, and the switch with
the update. Prints a table and writes benchmarks/results/adapt.json; the per-sequence files
(updates, results) go to ``--out`` and a rerun resumes them.

    .venv/bin/python benchmarks/adapt.py [--sequences data/sequences] [--out runs/adapt]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nnslim.adapt.encoder import AdaptConfig
from nnslim.io import atomic_write_json
from nnslim.jobs.adapt import AdaptRequest, adapt
from nnslim.jobs.common import Progress
from speed import machine_info

FILTERS = (Path("models/postfilter_x265_qp22-37.pt"), Path("models/postfilter_x265_qp22-37.bbc.nnsl"))
KEYS = ("bd_rate_base", "bd_rate_switch", "bd_rate_adapted", "bd_rate_adapted_vs_base")


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--out", type=Path, default=Path("runs/adapt"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/adapt.json"))
    args = parser.parse_args()
    console = Console()
    config = AdaptConfig()
    results: dict[str, Any] = {}
    for model in FILTERS:
        with console.status(f"adapting {model.name}") as status:
            progress = Progress(status=status.update, note=console.print)
            request = AdaptRequest(model, args.out / model.name, args.sequences, config, "test")
            results[model.name] = adapt(request, progress).to_json()
    original, slim = (results[m.name] for m in FILTERS)
    table = Table(title="BD-rate against x265 alone (test split, QP 22-37, update and flag bits counted)")
    for column in ("filter", "sequence", "base filter", "switch", "switch + update", "update vs base", "share QP37"):
        table.add_column(column, justify="left" if column in ("filter", "sequence") else "right")
    for name, result in results.items():
        for p in [*result["per_sequence"], {"sequence": "mean", **result["mean"]}]:
            share = p.get("update_share_top_qp", p.get("update_share_qp37", math.nan))
            table.add_row(name, p["sequence"], *(_pct(p[k]) for k in KEYS), f"{100 * share:.2f}%")
    console.print(table)
    document = {
        "command": "benchmarks/adapt.py",
        "config": original["config"],
        "machine": machine_info(config.threads),
        "filters": results,
        "slim_adapted_minus_original_base": slim["mean"]["bd_rate_adapted"] - original["mean"]["bd_rate_base"],
    }
    atomic_write_json(args.json, document)
    console.print(f"written to {args.json}")


if __name__ == "__main__":
    main()
