"""The model card of the shipped filters: size, complexity, training, and gain on the `test` split.

For every ``models/*.pt`` with its JSON description, measures Y-PSNR of the codec alone and
codec + filter on the test-split sequences (up to 416x240; all frames) at the QPs the
filter was trained on, and over QP 22/27/32/37 for filters trained on several QPs. Filters
of one architecture and codec trained one per QP form a family; a family covering four
QPs or more gets the BD-rate of codec + filter against codec alone. Prints the tables and
writes models/CARD.md and benchmarks/results/model_card.json.

    .venv/bin/python benchmarks/model_card.py [--sequences data/sequences] [--models models]

``--only FILE[,FILE]`` re-measures those files and keeps the other rows of the last run (their
weights and the test sequences are unchanged, and encodes are deterministic).
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
from nnslim.models.assess import filter_gain, summarise
from nnslim.models.filters import kmac_per_pixel, parameter_count
from nnslim.models.splits import splits_for
from nnslim.models.train import lineage, load_filter

LADDER = (22, 27, 32, 37)


def card_row(model_path: Path, sequences_dir: Path, frames: int | None) -> dict[str, Any]:
    model, meta = load_filter(model_path)
    training = meta["training"]
    qps = tuple(training["qps"])
    measured_qps = LADDER if len(qps) > 1 else qps
    splits = splits_for(meta, sequences_dir, (416, 240), frames, coding=(training["codec"], measured_qps))
    gain = filter_gain(model, splits.pairs("test"))
    runs = lineage(training)
    return {
        "file": model_path.name,
        "arch": meta["arch"],
        "parameters": parameter_count(model),
        "kmac_per_pixel": kmac_per_pixel(model),
        "bytes": model_path.stat().st_size,
        "codec": training["codec"],
        "trained_qps": list(qps),
        "measured_qps": list(measured_qps),
        "steps": sum(run["steps"] for run in runs),
        "batch": training["batch"],
        "patch": training["patch"],
        "lr": training["lr"],
        "loss": training["loss"],
        "train_sequences": training["train_sequences"],
        "validation_sequences": training["validation_sequences"],
        "train_seconds": sum(run["seconds"] for run in runs),
        "device": training["device"],
        "validation": meta["validation"],
        "test": gain,
        "commands": train_commands(meta["arch"], model_path.name, training),
    }


def families(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join filters of one architecture and codec trained one per QP, and summarise each join over its QPs."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if len(r["trained_qps"]) == 1:
            key = f"{r['arch']['name']} {json.dumps(r['arch']['kwargs'], sort_keys=True)} {r['codec']}"
            groups.setdefault(key, []).append(r)
    joined = []
    for members in groups.values():
        if len({m["trained_qps"][0] for m in members}) >= len(LADDER):
            members = sorted(members, key=lambda m: m["trained_qps"][0])
            summary = summarise([t for m in members for t in m["test"]["rows"]])
            joined.append(
                {
                    "arch": members[0]["arch"],
                    "codec": members[0]["codec"],
                    "files": [m["file"] for m in members],
                    "qps": [m["trained_qps"][0] for m in members],
                    **summary,
                }
            )
    return joined


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.2f}%"  # None: NaN read back from JSON


def train_commands(arch: dict[str, Any], file: str, training: dict[str, Any]) -> list[str]:
    """The `nnslim train` command lines that reproduce a filter file, first run first.

    A fine-tuned filter (``--init``) needs the runs that made its starting weights first.
    """
    runs = lineage(training)
    outs = [run["init_from"]["file"] for run in runs[1:]] + [file]
    return [_command(run.get("arch", arch), out, run) for run, out in zip(runs, outs, strict=True)]


def _command(arch: dict[str, Any], file: str, training: dict[str, Any]) -> str:
    parts = ["nnslim train", f"--arch {arch['name']}"]
    if arch["kwargs"]:
        parts.append(f"--arch-args '{json.dumps(arch['kwargs'])}'")
    parts += [
        f"--codec {training['codec']}",
        f"--qp {','.join(map(str, training['qps']))}",
        f"--train {','.join(training['train_sequences'])}",
        f"--validation {','.join(training['validation_sequences'])}",
    ]
    if training.get("init_from"):
        parts.append(f"--init models/{training['init_from']['file']}")
    parts += [
        f"--steps {training['steps']}",
        f"--batch {training['batch']}",
        f"--patch {training['patch']}",
        f"--lr {training['lr']}",
        f"--loss {training['loss']}",
        f"--margin {training.get('margin', 0)}",
        f"--seed {training['seed']}",
        f"--checkpoint-every {training['checkpoint_every']}",
        f"--out models/{file}",
    ]
    return " \\\n    ".join(parts)


def markdown(rows: list[dict[str, Any]], joined: list[dict[str, Any]]) -> str:
    lines = [
        "# Model card: shipped filters",
        "",
        "Written by `benchmarks/model_card.py`. Gains are Y-PSNR of codec + filter minus codec alone, on the",
        "`test` split (sequences up to 416x240, all frames), which no training used. Steps and training time",
        "add up every run that made a file (a fine-tune counts the runs of its starting weights too).",
        "Reproduce each file with the commands in the section below.",
        "",
        "| file | arch | params | kMAC/px | codec | trained QPs | steps | train time | hardware "
        "| test gain (dB) | BD-rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['file']} | {r['arch']['name']} {r['arch']['kwargs'] or ''} | {r['parameters']:,} "
            f"| {r['kmac_per_pixel']:.1f} | {r['codec']} | {','.join(map(str, r['trained_qps']))} | {r['steps']} "
            f"| {r['train_seconds'] / 60:.0f} min | {r['device']} | {r['test']['mean']['gain_db']:+.3f} "
            f"| {_percent(r['test']['mean']['bd_rate'])} |"
        )
    for family in joined:
        lines += [
            "",
            f"## {family['codec']} + {family['arch']['name']} (one model per QP) against {family['codec']} alone",
            "",
            f"Files {', '.join(family['files'])}, each applied at its own QP ({', '.join(map(str, family['qps']))}). "
            "BD-rate of Y-PSNR against kbps, Akima interpolation (`bjontegaard`); negative is a saving.",
            "",
            "| sequence | mean gain (dB) | BD-rate | BD-PSNR (dB) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {p['sequence']} | {p['gain_db']:+.3f} | {_percent(p['bd_rate'])} | {p['bd_psnr']:+.3f} |"
            for p in family["per_sequence"]
        ]
        lines.append(f"| **mean** | {family['mean']['gain_db']:+.3f} | {_percent(family['mean']['bd_rate'])} | |")
    for r in rows:
        if len(r["measured_qps"]) > 1:
            lines += [
                "",
                f"## {r['file']} (the QP as input) at each QP",
                "",
                "One model for every QP; mean gain over the test sequences at each.",
                "",
                "| QP | mean gain (dB) |",
                "|---|---|",
            ]
            for qp in r["measured_qps"]:
                gains = [t["gain_db"] for t in r["test"]["rows"] if t["qp"] == qp]
                lines.append(f"| {qp} | {sum(gains) / len(gains):+.3f} |")
    lines += ["", "## Reproducing", ""]
    for r in rows:
        lines += [f"`{r['file']}` ({r['train_seconds'] / 60:.0f} min on {r['device']}):", "", "```"]
        lines += "\n".join(r["commands"]).splitlines()
        lines += ["```", ""]
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


def _refreshed(row: dict[str, Any], path: Path) -> dict[str, Any]:
    """A kept row with its reproduction commands written anew from the file's description."""
    meta = json.loads(path.with_suffix(".json").read_text())
    return {**row, "commands": train_commands(meta["arch"], path.name, meta["training"])}


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--frames", type=int, help="first N frames per sequence (all by default)")
    parser.add_argument("--only", help="re-measure only these files (comma-separated); keep the other rows")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    previous = args.results / "model_card.json"
    kept = {r["file"]: r for r in json.loads(previous.read_text())["filters"]} if only and previous.is_file() else {}
    rows = [
        _refreshed(kept[path.name], path) if only and path.name not in only and path.name in kept else
        card_row(path, args.sequences, args.frames)
        for path in sorted(args.models.glob("*.pt"))
        if not path.name.endswith(".ckpt.pt")
    ]  # fmt: skip
    table = Table(title="shipped filters, gain on the test split")
    for column in ("file", "params", "kMAC/px", "QPs", "steps", "train min", "gain dB", "BD-rate %"):
        table.add_column(column, overflow="fold")
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
    console = Console()
    console.print(table)
    joined = families(rows)
    for family in joined:
        console.print(
            f"{family['codec']} + {family['arch']['name']} at QPs {family['qps']}: "
            f"BD-rate {_percent(family['mean']['bd_rate'])} against {family['codec']} alone"
        )
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.results / "model_card.json", {"filters": rows, "families": joined})
    atomic_write_bytes(args.models / "CARD.md", markdown(rows, joined).encode())
    return 0


if __name__ == "__main__":
    sys.exit(run())
