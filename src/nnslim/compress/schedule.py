"""Run a recipe: cut, retrain, measure, repeat, keeping the best model within the loss budget.

Every step is logged with its parameters, kMAC per pixel, validation and test Y-PSNR and
milliseconds per 1920x1080 frame, and saved, so that an interrupted run resumes after its last
finished step. Decisions (the loss budget, the ranks for a loss target) use the validation
sequences, which are held out of the train split; the test split is only reported.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.compress import activation, constraints, lowrank, quantize, sparsity
from nnslim.compress.graph import trace
from nnslim.compress.recipe import FineTune, Iterate, LowRank, Prune, Quantize, Recipe, Stage, kind_of
from nnslim.compress.surgery import remove_units
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import torch_ms_per_frame
from nnslim.io import atomic_write_json, json_safe
from nnslim.models.data import LumaPairs, sample_batch
from nnslim.models.filters import kmac_per_pixel, parameter_count, takes_qp
from nnslim.models.train import TrainConfig, finetune, load_filter, save_filter, validate

Log = Callable[[str], None]


@dataclass(frozen=True)
class Context:
    """What a run retrains on and measures with.

    Attributes:
        train: Pairs of the train split, for retraining and calibration.
        validation: Held-out train-split pairs; the loss budget is judged on them.
        test: Test-split pairs, reported at each step.
        base: The filter's training settings (architecture, codec, QPs, seed, threads).
        max_loss: Y-PSNR loss budget in dB against the uncompressed filter, on validation.
        frame_timing: Measure ms per 1920x1080 frame at each step.
        status: Told what is being done, for a progress display.
    """

    train: list[LumaPairs]
    validation: list[LumaPairs]
    test: list[LumaPairs]
    base: TrainConfig
    max_loss: float
    frame_timing: bool = True
    status: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.status:
            self.status(text)


def is_identity(model: nn.Module, ctx: Context) -> bool:
    """Whether a filter returns its input unchanged on a training frame (it has collapsed)."""
    pair = ctx.train[0]
    x = torch.from_numpy(pair.decoded[:1, None].astype(np.float32) / 255.0)
    inputs = (x, torch.full((1,), float(pair.qp))) if takes_qp(model) else (x,)
    model.eval()
    with torch.no_grad():
        return bool((model(*inputs) - inputs[0]).abs().max() == 0)


def measure(model: nn.Module, ctx: Context) -> dict[str, Any]:
    """Size, complexity, quality and speed of one model, and whether it collapsed to the identity."""
    ctx.say("measuring")
    val = validate(model, ctx.validation)
    test = validate(model, ctx.test) if ctx.test else {}
    return {
        "identity": is_identity(model, ctx),
        "parameters": parameter_count(model),
        "kmac_per_pixel": kmac_per_pixel(model),
        "validation_psnr_y": val["psnr_y_filtered"],
        "test_psnr_y": test.get("psnr_y_filtered", float("nan")),
        "test_gain_db": test.get("gain_db", float("nan")),
        "ms_per_1080p": torch_ms_per_frame(model, repetitions=1)["median_ms"] if ctx.frame_timing else None,
    }


def _retrain(model: nn.Module, ctx: Context, settings: FineTune, seed: int) -> None:
    if settings.steps <= 0:
        return
    config = replace(
        ctx.base, steps=settings.steps, lr=settings.lr, batch=settings.batch, patch=settings.patch, seed=seed,
        warmup=min(50, settings.steps // 10 + 1), margin=0,
    )  # fmt: skip
    finetune(model, ctx.train, config, lambda done: ctx.say(f"retraining, step {done} of {settings.steps}"))


def _calibration(model: nn.Module, ctx: Context, seed: int, settings: FineTune) -> list[tuple[torch.Tensor, ...]]:
    """Eight batches of training patches, drawn the same way for the same seed."""
    rng = np.random.default_rng(seed)
    batches: list[tuple[torch.Tensor, ...]] = []
    for _ in range(8):
        x, _y, qp = sample_batch(ctx.train, rng, settings.batch, settings.patch)
        batches.append((x, qp) if takes_qp(model) else (x,))
    return batches


def _keep_zeros(model: nn.Module) -> None:
    """Hold the current zero weights at zero during retraining."""
    masks = {name: layer.weight.detach() != 0 for name, layer in sparsity.prunable_weights(model).items()}
    sparsity.apply_masks(model, masks)


def output_layers(model: nn.Module) -> list[str]:
    """The Conv2d and Linear layers that write the filter's output (both halves of a split one)."""
    ends = trace(model).output_layers
    return [
        name for name in sparsity.prunable_weights(model) if any(name == e or name.startswith(e + ".") for e in ends)
    ]


def apply_sparsity(model: nn.Module, level: float, scope: str, prune_output: bool) -> None:
    """Magnitude sparsity at ``level``, leaving the output layers dense unless ``prune_output``."""
    skip = [] if prune_output else output_layers(model)
    sparsity.apply_masks(model, sparsity.magnitude_masks(model, level, scope, skip))


def prune_round(model: nn.Module, stage: Iterate, round_index: int, ctx: Context) -> tuple[nn.Module, dict[str, Any]]:
    """One round of the BBC loop: sparsity, activation pruning, retraining with the zeros held."""
    level = sparsity.gradual_sparsity(round_index + 1, stage.rounds, stage.sparsity)
    apply_sparsity(model, level, stage.scope, stage.prune_output)
    constraints.finalize(model)
    ctx.say(f"round {round_index + 1}: activation pruning")
    graph = trace(model)
    stats = activation.calibrate(model, graph, _calibration(model, ctx, ctx.base.seed + round_index, stage.finetune))
    dead = activation.dead_units(model, graph, stats)
    activation.fold_constants(model, graph, stats, dead)
    model = remove_units(model, graph, dead)
    graph = trace(model)
    stats = activation.calibrate(model, graph, _calibration(model, ctx, ctx.base.seed + round_index, stage.finetune))
    weak = activation.lowest(
        graph, activation.scores(model, graph, stats), stage.fraction, stage.round_to, stage.minimum, stage.ranking
    )
    model = remove_units(model, graph, weak)
    _keep_zeros(model)
    _retrain(model, ctx, stage.finetune, ctx.base.seed + round_index)
    constraints.finalize(model)
    return model, {"sparsity_target": level, "dead_units": len(dead), "removed_units": len(weak)}


def _default_lowrank_layers(model: nn.Module) -> list[str]:
    convs = [
        name
        for name, m in model.named_modules()
        if type(m) is nn.Conv2d and m.kernel_size[0] == m.kernel_size[1] > 1 and m.groups == 1
    ]
    return convs[1:-1]


def apply_lowrank(model: nn.Module, stage: LowRank, ctx: Context) -> nn.Module:
    """Seed 002: split the chosen convolutions by explicit ranks, an energy, or a loss target."""
    names = list(stage.layers) or _default_lowrank_layers(model)
    if stage.ranks:
        if len(stage.ranks) != len(names):
            raise NnslimError(f"lowrank: {len(stage.ranks)} ranks for {len(names)} layers")
        ranks = dict(zip(names, stage.ranks, strict=True))
    elif stage.max_loss is not None:

        def quality(candidate: nn.Module) -> float:
            return validate(candidate, ctx.validation)["psnr_y_filtered"]

        ranks = lowrank.ranks_for_loss(model, names, quality, stage.max_loss)
    elif stage.energy is not None:
        ranks = lowrank.ranks_for_energy(model, names, stage.energy)
    else:
        raise NnslimError("lowrank: give ranks, an energy or a max_loss")
    slim = lowrank.apply_lowrank(model, ranks)
    _keep_zeros(slim)
    _retrain(slim, ctx, stage.finetune, ctx.base.seed)
    constraints.finalize(slim)
    return slim


def apply_quantize(model: nn.Module, stage: Quantize) -> dict[str, dict[str, Any]]:
    """Register the stage's weight quantization on the model (in place); returns its metadata."""
    if stage.method == "kmeans":
        return quantize.share_weights(model, stage.bits)
    if stage.method == "uniform":
        return quantize.quantize_uniform(model, stage.bits, stage.per_channel)
    raise NnslimError(f"quantize: method must be kmeans or uniform, not {stage.method!r}")


class Run:
    """One compression run in an output folder: its steps, its saved models, and resuming.

    ``trusted_factory`` is the user architecture (``file.py:factory``) that the original filter,
    and so every step saved from it, may name (see ``load_filter``).
    """

    def __init__(
        self, original: Path, recipe: Recipe, ctx: Context, out: Path, log: Log, trusted_factory: str | None = None
    ) -> None:
        self.original, self.recipe, self.ctx, self.out, self.log = original, recipe, ctx, out, log
        self.trusted_factory = trusted_factory
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.model, self.meta = load_filter(original, trusted_factory)
        self.steps: list[dict[str, Any]] = []
        settings = {"recipe": recipe.to_dict(), "original": str(original), "max_loss": ctx.max_loss}
        self.settings = json.loads(json.dumps(settings))  # as saved: tuples become lists

    def _record(self, model: nn.Module, stage: int, round_index: int, extra: dict[str, Any], done: bool) -> None:
        row: dict[str, Any] = {"stage": stage, "kind": kind_of(self.recipe.stages[stage]) if stage >= 0 else "original"}
        row |= {"round": round_index, "done": done, **extra, **measure(model, self.ctx)}
        row["loss_db"] = self.steps[0]["validation_psnr_y"] - row["validation_psnr_y"] if self.steps else 0.0
        row["within_budget"] = row["loss_db"] <= self.ctx.max_loss
        row["kept"] = len(self.steps)
        self.steps.append(json_safe(row))  # as saved: what was not measured is None
        save_filter(model, self.work / f"step{len(self.steps) - 1:03d}.pt", self.meta)
        atomic_write_json(self.work / "steps.json", {"settings": self.settings, "steps": self.steps})
        self.log(
            f"step {len(self.steps) - 1} ({row['kind']}): {row['parameters']:,} parameters, "
            f"{row['kmac_per_pixel']:.1f} kMAC/px, validation loss {row['loss_db']:+.3f} dB"
            + (f", {row['ms_per_1080p']:.0f} ms per 1080p frame" if row["ms_per_1080p"] is not None else "")
            + ("; the filter has collapsed to the identity (it no longer changes its input)" if row["identity"] else "")
        )

    def _resume(self) -> tuple[int, int]:
        path = self.work / "steps.json"
        if not path.is_file():
            return 0, 0
        saved = json.loads(path.read_text())
        if saved["settings"] != self.settings:
            raise NnslimError(f"{path} was written with other settings; use another --out or the same settings")
        self.steps = saved["steps"]
        last = self.steps[-1]
        self.model, _ = load_filter(self.work / f"step{last['kept']:03d}.pt", self.trusted_factory)
        self.log(f"resuming after step {len(self.steps) - 1}")
        if last["stage"] < 0 or last["done"]:
            return last["stage"] + 1, 0
        return last["stage"], last["round"] + 1

    def best_within_budget(self) -> int:
        """Index of the smallest model (fewest parameters, then best validation) within the budget."""
        fits = [i for i, s in enumerate(self.steps) if s["within_budget"]]
        return min(fits, key=lambda i: (self.steps[i]["parameters"], -self.steps[i]["validation_psnr_y"]))

    def run(self) -> tuple[nn.Module, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Run (or resume) every stage; returns the chosen model, the steps and quantization metadata."""
        first_stage, first_round = self._resume()
        if not self.steps:
            self._record(self.model, -1, 0, {}, True)
        quantization: dict[str, dict[str, Any]] = {}
        for index in range(first_stage, len(self.recipe.stages)):
            stage: Stage = self.recipe.stages[index]
            start = first_round if index == first_stage else 0
            if isinstance(stage, Iterate):
                self._iterate(index, stage, start)
                continue
            model = copy.deepcopy(self.model)
            if isinstance(stage, Prune):
                apply_sparsity(model, stage.sparsity, stage.scope, stage.prune_output)
                _retrain(model, self.ctx, stage.finetune, self.ctx.base.seed)
                constraints.finalize(model)
            elif isinstance(stage, LowRank):
                model = apply_lowrank(model, stage, self.ctx)
            else:
                quantization = apply_quantize(model, stage)
                _retrain(model, self.ctx, stage.finetune, self.ctx.base.seed)
                constraints.finalize(model)
                quantization = _merge_codebooks(quantization, quantize.codebook_table(model))
            self.model = model
            self._record(model, index, 0, {"sparsity": sparsity.sparsity_of(model)}, True)
        return self.model, self.steps, quantization

    def _iterate(self, index: int, stage: Iterate, start: int) -> None:
        original_parameters = self.steps[0]["parameters"]
        for round_index in range(start, stage.rounds):
            candidate, info = prune_round(copy.deepcopy(self.model), stage, round_index, self.ctx)
            reached = parameter_count(candidate) <= stage.target * original_parameters
            last = reached or round_index == stage.rounds - 1
            self._record(candidate, index, round_index, info, False)
            if not self.steps[-1]["within_budget"]:
                best = self.best_within_budget()
                self.log(f"over the loss budget; keeping step {best}")
                self.model, _ = load_filter(self.work / f"step{best:03d}.pt", self.trusted_factory)
                self.steps[-1] |= {"done": True, "kept": best}
                atomic_write_json(self.work / "steps.json", {"settings": self.settings, "steps": self.steps})
                return
            self.model = candidate
            if last:
                self.steps[-1]["done"] = True
                atomic_write_json(self.work / "steps.json", {"settings": self.settings, "steps": self.steps})
                return


def _merge_codebooks(settings: dict[str, dict[str, Any]], tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each layer's quantization settings with its final codebook (retraining moved the registered scales)."""
    stale = ("scale", "centroids")
    return {
        name: {**{k: v for k, v in settings.get(name, {}).items() if k not in stale}, **table}
        for name, table in tables.items()
    }
