"""The ``lowrank`` stage: square convolutions split into d x 1 and 1 x d ones, then retraining."""

from __future__ import annotations

from typing import Any

from torch import nn

from nnslim.compress import constraints, lowrank, sparsity
from nnslim.compress.context import Context, Speed
from nnslim.compress.recipe import LowRank
from nnslim.compress.stages.common import Progress, StepOutcome, keep_zeros, retrain
from nnslim.errors import NnslimError
from nnslim.models.train import validate


def _default_layers(model: nn.Module) -> list[str]:
    convs = [
        name
        for name, m in model.named_modules()
        if type(m) is nn.Conv2d and m.kernel_size[0] == m.kernel_size[1] > 1 and m.groups == 1
    ]
    return convs[1:-1]


LAYER_INPUT = 288
"""Side of the feature map a layer is timed on: a 256-pixel tile with its 16-pixel overlap on each side."""


def faster_splits(model: nn.Module, ranks: dict[str, int], speed: Speed) -> tuple[dict[str, int], dict[str, Any]]:
    """The layers whose low-rank pair the runtime runs faster than their full kernel, and every layer's times.

    Returns:
        The ranks of those layers, and per layer ``{"full_ms", "pair_ms", "split"}``.
    """
    kept, times = {}, {}
    for name, rank in ranks.items():
        conv = model.get_submodule(name)
        if not isinstance(conv, nn.Conv2d):
            raise NnslimError(f"lowrank: {name} is not a convolution")
        if not lowrank.saves(conv, rank):
            continue  # apply_lowrank leaves it whole anyway
        pair = lowrank.decompose(conv, rank, name=name)
        full_ms, pair_ms = speed.layers([conv, pair], (1, conv.in_channels, LAYER_INPUT, LAYER_INPUT))
        times[name] = {"full_ms": full_ms, "pair_ms": pair_ms, "split": pair_ms < full_ms}
        if pair_ms < full_ms:
            kept[name] = rank
    return kept, times


def apply_lowrank(model: nn.Module, stage: LowRank, ctx: Context) -> tuple[nn.Module, dict[str, Any]]:
    """Seed 002: split the chosen convolutions by explicit ranks, an energy, or a loss target.

    Under the ``speed`` objective, only the layers whose pair the runtime runs faster are split
    (``faster_splits``); the second value holds those timings (empty otherwise).

    Raises:
        NnslimError: As many ranks as layers are not given, or none of ranks, energy and max_loss.
    """
    names = list(stage.layers) or _default_layers(model)
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
    times: dict[str, Any] = {}
    if ctx.objective == "speed" and ctx.speed is not None:
        ctx.say(f"timing each split against its full kernel in {ctx.speed.runtime}")
        ranks, times = faster_splits(model, ranks, ctx.speed)
    slim = lowrank.apply_lowrank(model, ranks)
    keep_zeros(slim)
    if ranks:
        retrain(slim, ctx, stage.finetune, ctx.base.seed)
    constraints.finalize(slim)
    return slim, times


def lowrank_step(model: nn.Module, stage: LowRank, progress: Progress, ctx: Context) -> StepOutcome:
    """The low-rank split of ``apply_lowrank`` as one step; under ``speed``, the layer timings are in ``layer_ms``."""
    slim, times = apply_lowrank(model, stage, ctx)
    info: dict[str, Any] = {"sparsity": sparsity.sparsity_of(slim)}
    if not times:
        return StepOutcome(slim, info)
    split = sum(t["split"] for t in times.values())
    runtime = ctx.speed.runtime if ctx.speed else ""
    note = f"{split} of {len(times)} kernels split: those whose low-rank pair ran faster in {runtime}"
    return StepOutcome(slim, info | {"layer_ms": times}, note=note)
