"""The ``iterate`` stage: one round of BBC R&D's loop per step."""

from __future__ import annotations

from torch import nn

from nnslim.compress import activation, constraints, sparsity
from nnslim.compress.context import Context
from nnslim.compress.graph import trace
from nnslim.compress.recipe import Iterate
from nnslim.compress.stages.common import Progress, StepOutcome, apply_sparsity, calibration, keep_zeros, retrain
from nnslim.compress.surgery import remove_units
from nnslim.models.filters import parameter_count


def prune_round(model: nn.Module, stage: Iterate, progress: Progress, ctx: Context) -> StepOutcome:
    """One round of the BBC loop: sparsity, activation pruning, retraining with the zeros held.

    The stage ends after its last round or once the parameters reach ``stage.target`` of the original's.
    """
    round_index = progress.round_index
    level = sparsity.gradual_sparsity(round_index + 1, stage.rounds, stage.sparsity)
    apply_sparsity(model, level, stage.scope, stage.prune_output)
    constraints.finalize(model)
    ctx.say(f"round {round_index + 1}: activation pruning")
    graph = trace(model)
    stats = activation.calibrate(model, graph, calibration(model, ctx, ctx.base.seed + round_index, stage.finetune))
    dead = activation.dead_units(model, graph, stats)
    activation.fold_constants(model, graph, stats, dead)
    model = remove_units(model, graph, dead)
    graph = trace(model)
    stats = activation.calibrate(model, graph, calibration(model, ctx, ctx.base.seed + round_index, stage.finetune))
    weak = activation.lowest(
        graph, activation.scores(model, graph, stats), stage.fraction, stage.round_to, stage.minimum, stage.ranking
    )
    model = remove_units(model, graph, weak)
    keep_zeros(model)
    retrain(model, ctx, stage.finetune, ctx.base.seed + round_index)
    constraints.finalize(model)
    reached = parameter_count(model) <= stage.target * progress.original_parameters
    return StepOutcome(
        model,
        {"sparsity_target": level, "dead_units": len(dead), "removed_units": len(weak)},
        last=reached or round_index == stage.rounds - 1,
    )
