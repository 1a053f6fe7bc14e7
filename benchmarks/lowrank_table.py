"""Seed 002's two tables for the low-rank post-filter, reproduced beside the published ones.

Moon and Kim (MPEG-NNR use case, VTM 3.0 post-filter, 7 layers of 64 channels) split the 3x3
kernels of layers 2 and 3 into 3x1 and 1x3 kernels of rank 32 and 24 (Tai et al. 2016, closed
form SVD, no retraining mentioned) and reported model size, PSNR and runtime. This script does
the same to nnslim's shipped ``postfilter`` (x265 QP 37) in one run:

- model size: fp32 bytes of the parameters, and the share of the original;
- Y-PSNR on the ``test`` split (sequences up to 416x240, every 8th frame), codec alone and filtered;
- runtime: PyTorch CPU ms per 1920x1080 luma frame (median), and the share of the original.

    .venv/bin/python benchmarks/lowrank_table.py [--model models/postfilter_x265_qp37.pt]

Writes benchmarks/results/lowrank_table.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nnslim.compress.lowrank import apply_lowrank
from nnslim.evaluate.runtime import torch_ms_per_frame
from nnslim.io import atomic_write_json
from nnslim.models.filters import parameter_count
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter, validate

# Seed 002, tables 1 and 2 (KB, % of the original, PSNR dB, runtime % of the original).
PUBLISHED = [
    {"variant": "original", "size_kb": 692, "size_pct": 100, "psnr": 39.95, "runtime_pct": 100},
    {"variant": "layer 2 at K=32", "size_kb": 495, "size_pct": 72, "psnr": 38.93, "runtime_pct": 94},
    {"variant": "layers 2, 3 at K=32, 24", "size_kb": 341, "size_pct": 49, "psnr": 38.92, "runtime_pct": 83},
]
VARIANTS: list[tuple[str, dict[str, int]]] = [
    ("original", {}),
    ("layer 2 at K=32", {"body.2": 32}),
    ("layers 2, 3 at K=32, 24", {"body.2": 32, "body.4": 24}),
]


def measure(model_path: Path, sequences: Path, repetitions: int) -> list[dict[str, Any]]:
    model, meta = load_filter(model_path)
    pairs = splits_for(meta, sequences, (416, 240)).pairs("test")
    rows = []
    for name, ranks in VARIANTS:
        variant = apply_lowrank(model, ranks) if ranks else model
        quality = validate(variant, pairs)
        rows.append(
            {
                "variant": name,
                "ranks": ranks,
                "parameters": parameter_count(variant),
                "size_kb": parameter_count(variant) * 4 / 1000,
                "psnr_codec": quality["psnr_y_codec"],
                "psnr": quality["psnr_y_filtered"],
                "ms_per_1080p": torch_ms_per_frame(variant, repetitions=repetitions)["median_ms"],
            }
        )
    for row in rows:
        row["size_pct"] = 100 * row["parameters"] / rows[0]["parameters"]
        row["runtime_pct"] = 100 * row["ms_per_1080p"] / rows[0]["ms_per_1080p"]
        row["psnr_loss"] = rows[0]["psnr"] - row["psnr"]
    return rows


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/postfilter_x265_qp37.pt"))
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "lowrank_table.json")
    args = parser.parse_args()
    rows = measure(args.model, args.sequences, args.repetitions)
    table = Table(title="Seed 002 tables 1 and 2: theirs (VTM 3.0 post-filter) | ours (postfilter, x265 QP 37)")
    for column in ("variant", "size KB", "size %", "PSNR dB", "runtime %", "| size KB", "size %", "Y-PSNR dB",
                   "loss dB", "ms/1080p", "runtime %"):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    for theirs, ours in zip(PUBLISHED, rows, strict=True):
        table.add_row(
            ours["variant"],
            f"{theirs['size_kb']}",
            f"{theirs['size_pct']}%",
            f"{theirs['psnr']:.2f}",
            f"{theirs['runtime_pct']}%",
            f"| {ours['size_kb']:.0f}",
            f"{ours['size_pct']:.0f}%",
            f"{ours['psnr']:.3f}",
            f"{ours['psnr_loss']:+.3f}",
            f"{ours['ms_per_1080p']:.0f}",
            f"{ours['runtime_pct']:.0f}%",
        )
    Console(width=200).print(table)
    atomic_write_json(args.json, {"model": str(args.model), "published": PUBLISHED, "measured": rows})
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
