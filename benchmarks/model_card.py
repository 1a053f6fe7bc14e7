"""The model card of the shipped filters: size, complexity, training, and gain on the `test` split.

For every ``models/*.pt`` with its JSON description, measures Y-PSNR of the codec alone and
codec + filter on the test-split sequences (up to 416x240; all frames) at the QPs the
filter was trained on, and over QP 22/27/32/37 for filters trained on several QPs (giving a
BD-rate). Prints the table and writes models/CARD.md and benchmarks/results/model_card.json.

    .venv/bin/python benchmarks/model_card.py [--sequences data/sequences] [--models models]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nnslim.io import atomic_write_bytes, atomic_write_json
from nnslim.models.assess import filter_gain
from nnslim.models.filters import kmac_per_pixel, parameter_count
from nnslim.models.train import load_filter
from nnslim.video.content import cache_dir, load_manifest, select

LADDER = (22, 27, 32, 37)


def card_row(model_path: Path, sequences_dir: Path, frames: int | None) -> dict[str, Any]:
    model, meta = load_filter(model_path)
    training = meta["training"]
    qps = tuple(training["qps"])
    measured_qps = LADDER if len(qps) > 1 else qps
    sequences = list(select(load_manifest(sequences_dir), "test", max_size=(416, 240)))
    gain = filter_gain(model, sequences, training["codec"], measured_qps, cache_dir() / "encodes", frames)
    return {
        "file": model_path.name,
        "arch": meta["arch"],
        "parameters": parameter_count(model),
        "kmac_per_pixel": kmac_per_pixel(model),
        "bytes": model_path.stat().st_size,
        "codec": training["codec"],
        "trained_qps": list(qps),
        "measured_qps": list(measured_qps),
        "steps": training["steps"],
        "batch": training["batch"],
        "patch": training["patch"],
        "lr": training["lr"],
        "loss": training["loss"],
        "train_sequences": training["train_sequences"],
        "validation_sequences": training["validation_sequences"],
        "train_seconds": training["seconds"],
        "device": training["device"],
        "validation": meta["validation"],
        "test": gain,
        "command": train_command(meta["arch"], model_path.name, training),
    }


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}%"


def train_command(arch: dict[str, Any], file: str, training: dict[str, Any]) -> str:
    """The `nnslim train` command line that reproduces a filter file."""
    parts = ["nnslim train", f"--arch {arch['name']}"]
    if arch["kwargs"]:
        parts.append(f"--arch-args '{json.dumps(arch['kwargs'])}'")
    parts += [
        f"--codec {training['codec']}",
        f"--qp {','.join(map(str, training['qps']))}",
        f"--validation {','.join(training['validation_sequences'])}",
        f"--steps {training['steps']}",
        f"--batch {training['batch']}",
        f"--patch {training['patch']}",
        f"--lr {training['lr']}",
        f"--loss {training['loss']}",
        f"--seed {training['seed']}",
        f"--checkpoint-every {training['checkpoint_every']}",
        f"--out models/{file}",
    ]
    return " \\\n    ".join(parts)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Model card: shipped filters",
        "",
        "Written by `benchmarks/model_card.py`. Gains are Y-PSNR of codec + filter minus codec alone, on the",
        "`test` split (sequences up to 416x240, all frames), which no training used. Reproduce each file with",
        "the command in the section below.",
        "",
        "| file | arch | params | kMAC/px | codec | trained QPs | steps | train time | hardware "
        "| test gain (dB) | BD-rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bd = r["test"]["mean"]["bd_rate"]
        lines.append(
            f"| {r['file']} | {r['arch']['name']} {r['arch']['kwargs'] or ''} | {r['parameters']:,} "
            f"| {r['kmac_per_pixel']:.1f} | {r['codec']} | {','.join(map(str, r['trained_qps']))} | {r['steps']} "
            f"| {r['train_seconds'] / 60:.0f} min | {r['device']} | {r['test']['mean']['gain_db']:+.3f} "
            f"| {_percent(bd)} |"
        )
    lines += ["", "## Reproducing", ""]
    for r in rows:
        lines += [
            f"`{r['file']}` ({r['train_seconds'] / 60:.0f} min on {r['device']}):",
            "",
            "```",
            r["command"],
            "```",
            "",
        ]
    lines += ["## Per sequence", ""]
    for r in rows:
        lines += [
            f"### {r['file']}",
            "",
            "| sequence | QP | kbps | Y-PSNR codec | Y-PSNR filtered | gain |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['sequence']} | {t['qp']} | {t['kbps']:.1f} | {t['psnr_y_codec']:.3f} | {t['psnr_y_filtered']:.3f} "
            f"| {t['gain_db']:+.3f} |"
            for t in r["test"]["rows"]
        ]
        lines.append("")
    return "\n".join(lines) + "\n"


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--frames", type=int, help="first N frames per sequence (all by default)")
    args = parser.parse_args()
    rows = [
        card_row(path, args.sequences, args.frames)
        for path in sorted(args.models.glob("*.pt"))
        if not path.name.endswith(".ckpt.pt")
    ]
    table = Table(title="shipped filters, gain on the test split")
    for column in ("file", "params", "kMAC/px", "QPs", "steps", "train min", "gain dB", "BD-rate %"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["file"],
            f"{r['parameters']:,}",
            f"{r['kmac_per_pixel']:.1f}",
            str(r["measured_qps"]),
            str(r["steps"]),
            f"{r['train_seconds'] / 60:.0f}",
            f"{r['test']['mean']['gain_db']:+.3f}",
            _percent(r["test"]["mean"]["bd_rate"]),
        )
    Console().print(table)
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results / "model_card.json", {"filters": rows})
    atomic_write_bytes(args.models / "CARD.md", markdown(rows).encode())
    return 0


if __name__ == "__main__":
    sys.exit(run())
