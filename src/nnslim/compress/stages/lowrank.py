"""The ``lowrank`` stage: square convolutions split into d x 1 and 1 x d ones, then retraining."""

from __future__ import annotations

from torch import nn

from nnslim.compress import constraints, lowrank, sparsity
from nnslim.compress.context import Context
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


def apply_lowrank(model: nn.Module, stage: LowRank, ctx: Context) -> nn.Module:
    """Seed 002: split the chosen convolutions by explicit ranks, an energy, or a loss target.

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
    slim = lowrank.apply_lowrank(model, ranks)
    keep_zeros(slim)
    retrain(slim, ctx, stage.finetune, ctx.base.seed)
    constraints.finalize(slim)
    return slim


def lowrank_step(model: nn.Module, stage: LowRank, progress: Progress, ctx: Context) -> StepOutcome:
    """The low-rank split of ``apply_lowrank`` as one step."""
    slim = apply_lowrank(model, stage, ctx)
    return StepOutcome(slim, {"sparsity": sparsity.sparsity_of(slim)})
