"""Speed of the content-adaptive update's training step, in PyTorch's two memory layouts, in one run.

``nnslim adapt`` trains the adapted parameters of a ``trainable`` copy of the filter in
channels-last layout. This measures why: the seconds per training step (``finetune``, its
default batch (``AdaptConfig``'s: 14 patches of 48x48) drawn from the validation sequence at one QP, multipliers
adapting, 2 threads) with the copy in the default (contiguous) layout and in channels-last. The
two are timed in turns, ``--steps`` steps a run, ``--repetitions`` runs each after one warm-up
run each, and each layout's time is the median; the ratio is contiguous over channels-last.
Prints a table and writes benchmarks/results/adapt_step.json.

    .venv/bin/python benchmarks/adapt_step.py [--sequences data/sequences]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from nnslim.adapt import params
from nnslim.adapt.encoder import AdaptConfig
from nnslim.io import atomic_write_json
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from nnslim.models.splits import splits_for
from nnslim.models.train import TrainConfig, finetune, load_filter
from speed import machine_info

MODEL = Path("models/postfilter_x265_qp22-37.pt")
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _seconds_per_step(
    base: torch.nn.Module, pair: LumaPairs, settings: TrainConfig, layout: torch.memory_format
) -> float:
    tuned = params.trainable(base, "multipliers")
    tuned.to(memory_format=layout)  # type: ignore[call-overload]  # untyped in torch
    start = time.perf_counter()
    finetune(tuned, [pair], settings)
    return (time.perf_counter() - start) / settings.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--qp", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/adapt_step.json"))
    args = parser.parse_args()
    base, meta = load_filter(MODEL)
    (pair,) = [p for p in splits_for(meta, args.sequences, (416, 240), 32).pairs("validation") if p.qp == args.qp]
    adapt = AdaptConfig()
    settings = TrainConfig(
        ArchSpec.from_dict(meta["arch"]), steps=args.steps, batch=adapt.batch, patch=adapt.patch, lr=adapt.lr,
        warmup=1, threads=adapt.threads,
    )  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for repetition in range(args.repetitions + 1):
        for name, layout in LAYOUTS.items():
            seconds = _seconds_per_step(base, pair, settings, layout)
            if repetition:  # the first round warms up
                times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["contiguous"] / median["channels_last"]
    table = Table(title=f"{MODEL.name}: one adapt training step ({pair.name} QP {pair.qp}, {adapt.threads} threads)")
    for column in ("layout", "ms per step (median)", "runs"):
        table.add_column(column, justify="left" if column == "layout" else "right")
    for name in LAYOUTS:
        table.add_row(name, f"{1000 * median[name]:.1f}", str(len(times[name])))
    console = Console()
    console.print(table)
    console.print(f"channels-last is {ratio:.2f}x faster")
    document: dict[str, Any] = {
        "command": "benchmarks/adapt_step.py", "model": str(MODEL), "sequence": pair.name, "qp": pair.qp,
        "batch": adapt.batch, "patch": adapt.patch, "steps_per_run": args.steps, "machine": machine_info(adapt.threads),
        "seconds_per_step": times, "median_seconds_per_step": median, "speedup_channels_last": ratio,
    }  # fmt: skip
    atomic_write_json(args.json, document)
    console.print(f"written to {args.json}")


if __name__ == "__main__":
    main()
