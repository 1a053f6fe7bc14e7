"""How the content-adaptive method's settings were chosen: on the validation sequence, never on test.

1. The Lagrange multiplier: the x265 rate-distortion slope (-dSSE/dbits between neighbouring
   QPs) of the validation sequence, against HM's ``0.57 * 2**((QP - 12) / 3)``; the geometric
   mean of the ratios is ``lambda_scale``.
2. What adapts: ``nnslim adapt --split validation`` for each mode (biases, multipliers, affine,
   last), one update per coding QP (``--per-qp``, 200 steps each), at that lambda, on the first
   32 frames; the mode of best mean BD-rate (switch and update, bits counted) is chosen.
3. How fast it learns: the chosen mode again at the other learning rates of ``RATES``; the
   learning rate of best mean BD-rate is chosen.
4. The update's quantization: the chosen mode and learning rate with the denser NNR QPs
   ``DENSE`` against stage 3's trial with the ``COARSE`` ones; the grid of better mean BD-rate
   is chosen.
5. What a step sees: with stage 4's choices, the patch sides of ``PATCHES``, each with as many
   patches as keep a step's samples (so its time) about those of stages 1 to 4 (``PIXELS``);
   the side of best mean BD-rate is chosen.

Every stage trains ``STEPS`` per update, what fits the 2-minute budget of a 64-frame sequence
on 2 cores; stages 1 to 3 may choose among the ``COARSE`` NNR QPs. A trial already in the JSON
or in ``OUT/trials.json`` (same name) is kept, so a rerun resumes.

A previous run of this script also trained each mode once for all coding QPs (400 steps): that
was worse than per QP for every mode (README), so it is no longer tried.

Prints a table and writes benchmarks/results/adapt_validation.json.

    .venv/bin/python benchmarks/adapt_validation.py [--sequences data/sequences] [--out runs/adapt_validation]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from nnslim.adapt.encoder import AdaptConfig, hm_lambda
from nnslim.adapt.params import check_mode
from nnslim.io import atomic_write_json
from nnslim.jobs.adapt import AdaptRequest, adapt
from nnslim.jobs.common import Progress
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter
from nnslim.video.metrics import psnr_frames

MODEL = Path("models/postfilter_x265_qp22-37.pt")
FRAMES = 32
TRIED = {"biases": 5e-3, "multipliers": 5e-3, "affine": 5e-3, "last": 2e-3}
"""Each mode and its first learning rate."""
RATES = (5e-3, 1e-2, 2e-2, 4e-2)
"""Learning rates tried for the chosen mode."""
STEPS = 200
"""Steps per update in every stage: what fits the time budget (4 QPs of 200 steps at about 0.1 s a step on 2 cores)."""
COARSE = (-32, -24, -16, -12, -8, -4)
"""NNR QPs the update may take in stages 1 to 3 (a step of 2**-8 to 2**-1)."""
DENSE = (-24, -20, -16, -14, -12, -10, -8, -6, -4)
"""The denser NNR QPs of stage 4 (steps half an octave apart from -16 on)."""
FIRST_PATCH, FIRST_BATCH = 64, 8
"""Patch side and patches per step of stages 1 to 4."""
PIXELS = FIRST_BATCH * FIRST_PATCH**2
"""Luma samples a training step sees in stages 1 to 4."""
PATCHES = (32, 40, 48, 56, 64)
"""Patch sides of stage 5."""


def batch_for(patch: int) -> int:
    """Patches per step of side ``patch`` that see about ``PIXELS`` samples."""
    return max(1, round(PIXELS / patch**2))


def lambda_scale(sequences: Path) -> tuple[float, list[dict[str, float]]]:
    """The ratio of the codec's own rate-distortion slope to HM's lambda on validation, geometric mean over QP pairs."""
    _, meta = load_filter(MODEL)
    pairs = sorted(splits_for(meta, sequences, (416, 240), FRAMES).pairs("validation"), key=lambda p: p.qp)
    points = []
    for low, high in itertools.pairwise(pairs):
        sse = [
            float(np.mean(65025 / 10 ** (psnr_frames(p.original, p.decoded) / 10))) * p.decoded.size
            for p in (low, high)
        ]
        slope = (sse[1] - sse[0]) / (8 * (low.video_bytes - high.video_bytes))
        qp = (low.qp + high.qp) / 2
        points.append(
            {"qp": qp, "slope": slope, "hm_lambda": hm_lambda(round(qp)), "ratio": slope / hm_lambda(round(qp))}
        )
    return math.exp(float(np.mean([math.log(p["ratio"]) for p in points]))), points


def _grid(nnr_qps: tuple[int, ...]) -> str:
    return "nnr " + ",".join(map(str, nnr_qps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--out", type=Path, default=Path("runs/adapt_validation"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/adapt_validation.json"))
    args = parser.parse_args()
    console = Console()
    scale, slopes = lambda_scale(args.sequences)
    console.print(
        f"lambda_scale on validation: {scale:.2f} ("
        + ", ".join(f"QP {p['qp']}: {p['ratio']:.1f}" for p in slopes)
        + ")"
    )
    checkpoint = args.out / "trials.json"
    done: dict[str, dict[str, Any]] = {}
    for path in (args.json, checkpoint):
        if path.exists():
            done |= json.loads(path.read_text())["modes"]
    for kept in done.values():  # trials recorded before stage 5 ran with its first patches
        kept.setdefault("patch", FIRST_PATCH)
        kept.setdefault("batch", FIRST_BATCH)
    modes: dict[str, dict[str, Any]] = {}

    def trial(mode: str, lr: float, nnr_qps: tuple[int, ...] = COARSE, patch: int = FIRST_PATCH) -> str:
        name = f"{mode} lr {lr:g}" + ("" if nnr_qps == COARSE else f" steps {STEPS} {_grid(nnr_qps)}")
        name += "" if patch == FIRST_PATCH else f" patch {patch} batch {batch_for(patch)}"
        config = AdaptConfig(
            check_mode(mode), lr=lr, steps=STEPS, nnr_qps=nnr_qps, lambda_scale=round(scale, 1), patch=patch,
            batch=batch_for(patch),
        )  # fmt: skip
        if name in done:
            modes[name] = done[name]
        else:
            with console.status(f"adapting ({name})") as status:
                folder = args.out / name.replace(" ", "_").replace(",", "_")
                request = AdaptRequest(MODEL, folder, args.sequences, config, "validation", frames=FRAMES)
                result = adapt(request, Progress(status=status.update)).to_json()
            modes[name] = {"mode": mode, "per_qp": config.per_qp, "lr": lr, "steps": STEPS, "nnr_qps": nnr_qps,
                           "patch": patch, "batch": config.batch, "mean": result["mean"],
                           "rows": result["rows"]}  # fmt: skip
            atomic_write_json(checkpoint, {"modes": done | modes})
        mean = modes[name]["mean"]
        console.print(
            f"{name}: BD-rate base {mean['bd_rate_base']:+.2f}%, switch {mean['bd_rate_switch']:+.2f}%, "
            f"switch + update {mean['bd_rate_adapted']:+.2f}%"
        )
        return name

    def bd_rate(name: str) -> float:
        return float(modes[name]["mean"]["bd_rate_adapted"])

    mode = modes[min((trial(mode, lr) for mode, lr in TRIED.items()), key=bd_rate)]["mode"]
    console.print(f"mode chosen on validation: {mode}")
    for lr in RATES:
        if lr != TRIED[mode]:
            trial(mode, lr)
    best = min((n for n in modes if modes[n]["mode"] == mode), key=bd_rate)
    lr = modes[best]["lr"]
    console.print(f"chosen on validation: {best}")
    grids = {trial(mode, lr, grid): grid for grid in (COARSE, DENSE)}
    grid = grids[min(grids, key=bd_rate)]
    patches = {trial(mode, lr, grid, patch): patch for patch in PATCHES}
    budget = min(patches, key=bd_rate)
    patch = patches[budget]
    console.print(f"chosen within the time budget: {budget}")
    document = {"command": "benchmarks/adapt_validation.py", "model": str(MODEL), "frames": FRAMES,
                "lambda_scale": scale, "slopes": slopes, "modes": modes, "chosen": best,
                "chosen_in_budget": {"trial": budget, "steps": STEPS, "nnr_qps": grid, "patch": patch,
                                     "batch": batch_for(patch)}}  # fmt: skip
    atomic_write_json(args.json, document)
    console.print(f"written to {args.json}")


if __name__ == "__main__":
    main()
