"""How deploy's calibration default was chosen: min-max against percentile ranges, on validation.

Each shipped slim filter is quantized whole (every node that has an int8 operator in int8, no
budget, no fallback beyond the nodes without one, no fine-tuning) with each calibration method,
and its Y-PSNR loss against the unpruned original is measured on the validation split, as
``nnslim deploy`` measures it. The method with the lower mean loss is ``DeployConfig.calibration``.
Prints a table and writes benchmarks/results/deploy_calibration.json.

    .venv/bin/python benchmarks/deploy_calibration.py [--sequences data/sequences]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nnslim.deploy.quantize import CALIBRATIONS, DeployConfig
from nnslim.io import atomic_write_json, json_safe
from nnslim.jobs.deploy import DeployRequest, deploy

SHIPPED = ("postfilter_x265_qp37", "postfilter_x265_qp22-37", "inloop_x265_qp37")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/deploy_calibration"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/deploy_calibration.json"))
    args = parser.parse_args()
    console = Console()
    rows = []
    for name in SHIPPED:
        for method in CALIBRATIONS:
            config = DeployConfig(max_loss_db=math.inf, float_fallback=True, threads=args.threads, calibration=method)
            request = DeployRequest(
                Path(f"models/{name}.bbc.nnsl"), args.out / f"{name}.{method}.onnx", args.sequences, config,
                against=Path(f"models/{name}.pt"),
            )  # fmt: skip
            args.out.mkdir(parents=True, exist_ok=True)
            with console.status(f"{name}: {method}"):
                result = deploy(request)
            rows.append({"filter": name, "calibration": method, "loss_db_validation": result.loss_db,
                         "float_nodes": [n.name for n in result.deployment.chosen.float_nodes]})  # fmt: skip
    means = {m: float(np.mean([r["loss_db_validation"] for r in rows if r["calibration"] == m])) for m in CALIBRATIONS}
    chosen = min(means, key=lambda m: means[m])
    table = Table("filter", *CALIBRATIONS, title="int8 Y-PSNR loss against the original on validation (dB)")
    for name in SHIPPED:
        table.add_row(name, *(f"{r['loss_db_validation']:+.4f}" for r in rows if r["filter"] == name))
    table.add_row("mean", *(f"{means[m]:+.4f}" for m in CALIBRATIONS))
    console.print(table)
    console.print(f"chosen: {chosen} (DeployConfig.calibration is {DeployConfig.calibration})")
    settings = dataclasses.asdict(DeployConfig(max_loss_db=math.inf, float_fallback=True, threads=args.threads))
    atomic_write_json(
        args.json, json_safe({"settings": settings, "rows": rows, "mean_loss_db": means, "chosen": chosen})
    )


if __name__ == "__main__":
    main()
