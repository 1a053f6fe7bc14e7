"""How deploy's settings were chosen, on validation: the calibration method, and the in-loop filter's fine-tuning.

1. Each shipped slim filter is quantized whole (every node that has an int8 operator in int8,
   no budget, no fallback beyond the nodes without one, no fine-tuning) with each calibration
   method, and its Y-PSNR loss against the unpruned original is measured on the validation
   split, as ``nnslim deploy`` measures it. The method with the lower mean loss is
   ``DeployConfig.calibration``.
2. The slim in-loop filter, quantized whole the same way with that method after each number of
   quantization-aware fine-tuning steps in ``QAT_STEPS``: the number with the lowest loss is the
   ``--qat-steps`` its shipped int8 model was deployed with.

Prints the tables and writes benchmarks/results/deploy_validation.json.

    .venv/bin/python benchmarks/deploy_validation.py [--sequences data/sequences]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from nnslim.deploy.qat import QatConfig
from nnslim.deploy.quantize import CALIBRATIONS, DeployConfig
from nnslim.io import atomic_write_json, json_safe
from nnslim.jobs.deploy import DeployRequest, DeployResult, deploy

SHIPPED = ("postfilter_x265_qp37", "postfilter_x265_qp22-37", "inloop_x265_qp37")
INLOOP = "inloop_x265_qp37"
QAT_STEPS = (0, 500, 2000)


def whole_int8_loss(name: str, config: DeployConfig, args: argparse.Namespace, label: str) -> DeployResult:
    """``nnslim deploy`` of a shipped slim filter against its original, written under ``args.out``."""
    request = DeployRequest(
        Path(f"models/{name}.bbc.nnsl"), args.out / f"{name}.{label}.onnx", args.sequences, config,
        against=Path(f"models/{name}.pt"),
    )  # fmt: skip
    return deploy(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/deploy_validation"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/deploy_validation.json"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console()
    whole = DeployConfig(max_loss_db=math.inf, float_fallback=True, threads=args.threads)
    rows = []
    for name in SHIPPED:
        for method in CALIBRATIONS:
            with console.status(f"{name}: {method}"):
                result = whole_int8_loss(name, dataclasses.replace(whole, calibration=method), args, method)
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
    tuned = []
    for steps in QAT_STEPS:
        config = dataclasses.replace(whole, calibration=chosen, qat=QatConfig(steps=steps))
        with console.status(f"{INLOOP}: {steps} fine-tuning steps"):
            result = whole_int8_loss(INLOOP, config, args, f"qat{steps}")
        tuned.append({"qat_steps": steps, "loss_db_validation": result.loss_db, "seconds": result.seconds})
    best = min(tuned, key=lambda r: r["loss_db_validation"])["qat_steps"]
    table = Table("QAT steps", "loss (dB)", "seconds", title=f"{INLOOP}, whole int8, {chosen} calibration")
    for row in tuned:
        table.add_row(str(row["qat_steps"]), f"{row['loss_db_validation']:+.4f}", f"{row['seconds']:.0f}")
    console.print(table)
    console.print(f"chosen: --qat-steps {best} for {INLOOP}")
    document = {
        "settings": dataclasses.asdict(whole), "calibration": {"rows": rows, "mean_loss_db": means, "chosen": chosen},
        "inloop_qat": {"filter": INLOOP, "rows": tuned, "chosen": best},
    }  # fmt: skip
    atomic_write_json(args.json, json_safe(document))


if __name__ == "__main__":
    main()
