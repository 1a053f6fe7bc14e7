"""The ``prune`` stage: magnitude pruning to a sparsity, then retraining with the masks held."""

from __future__ import annotations

from torch import nn

from nnslim.compress import constraints, sparsity
from nnslim.compress.context import Context
from nnslim.compress.recipe import Prune
from nnslim.compress.stages.common import Progress, StepOutcome, apply_sparsity, retrain


def prune_step(model: nn.Module, stage: Prune, progress: Progress, ctx: Context) -> StepOutcome:
    """Deep Compression's pruning: ``stage.sparsity`` of the weights set to zero, then retraining."""
    apply_sparsity(model, stage.sparsity, stage.scope, stage.prune_output)
    retrain(model, ctx, stage.finetune, ctx.base.seed)
    constraints.finalize(model)
    return StepOutcome(model, {"sparsity": sparsity.sparsity_of(model)})
