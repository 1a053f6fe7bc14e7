"""The ``quantize`` stage: weight quantization (shared weights or uniform), then aware retraining."""

from __future__ import annotations

from typing import Any

from torch import nn

from nnslim.compress import constraints, quantize, sparsity
from nnslim.compress.context import Context
from nnslim.compress.recipe import Quantize
from nnslim.compress.stages.common import Progress, StepOutcome, retrain
from nnslim.errors import NnslimError

STALE = ("scale", "centroids")  # retraining moves them; the run reads the final codebooks from the model


def apply_quantize(model: nn.Module, stage: Quantize) -> dict[str, dict[str, Any]]:
    """Register the stage's weight quantization on the model (in place); returns its metadata.

    Raises:
        NnslimError: A method other than kmeans or uniform, or bits out of its range.
    """
    if stage.method == "kmeans":
        return quantize.share_weights(model, stage.bits)
    if stage.method == "uniform":
        return quantize.quantize_uniform(model, stage.bits, stage.per_channel)
    raise NnslimError(f"quantize: method must be kmeans or uniform, not {stage.method!r}")


def quantize_step(model: nn.Module, stage: Quantize, progress: Progress, ctx: Context) -> StepOutcome:
    """Quantize every layer's weight, retrain with the quantization held, and bake it in."""
    registered = apply_quantize(model, stage)
    retrain(model, ctx, stage.finetune, ctx.base.seed)
    constraints.finalize(model)
    settings = {name: {k: v for k, v in table.items() if k not in STALE} for name, table in registered.items()}
    return StepOutcome(model, {"sparsity": sparsity.sparsity_of(model)}, quantization=settings)
