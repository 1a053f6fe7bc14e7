"""What every stage handler returns and the steps that handlers share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.compress import sparsity
from nnslim.compress.context import Context
from nnslim.compress.graph import trace
from nnslim.compress.recipe import FineTune
from nnslim.models.data import sample_batch
from nnslim.models.filters import takes_qp
from nnslim.models.train import finetune


@dataclass(frozen=True)
class Progress:
    """Where a step stands in its run.

    Attributes:
        round_index: The step's round within its stage, from 0 (always 0 for one-step stages).
        original_parameters: Parameters of the uncompressed filter.
    """

    round_index: int
    original_parameters: int


@dataclass(frozen=True)
class StepOutcome:
    """What one step of a stage gives back.

    Attributes:
        model: The model after the step (finalized: no parametrizations left).
        info: Extra keys for the step's row in ``steps.json``.
        quantization: Per layer, the quantization settings (``kind``, ``bits``, ...) the step
            registered; the run adds each layer's codebook, read from the saved model.
        last: Whether the stage ends with this step (a multi-round stage sets it at its last round).
        note: What the step's log line should also say (empty: nothing).
    """

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, dict[str, Any]] | None = None
    last: bool = True
    note: str = ""


Handler = Callable[[nn.Module, Any, Progress, Context], StepOutcome]


def retrain(model: nn.Module, ctx: Context, settings: FineTune, seed: int) -> None:
    """Fine-tune ``model`` in place on the train split (nothing when ``settings.steps`` is 0)."""
    if settings.steps <= 0:
        return
    config = replace(
        ctx.base, steps=settings.steps, lr=settings.lr, batch=settings.batch, patch=settings.patch, seed=seed,
        warmup=min(50, settings.steps // 10 + 1), margin=0,
    )  # fmt: skip
    finetune(model, ctx.train, config, lambda done: ctx.say(f"retraining, step {done} of {settings.steps}"))


def calibration(model: nn.Module, ctx: Context, seed: int, settings: FineTune) -> list[tuple[torch.Tensor, ...]]:
    """Eight batches of training patches, drawn the same way for the same seed."""
    rng = np.random.default_rng(seed)
    batches: list[tuple[torch.Tensor, ...]] = []
    for _ in range(8):
        x, _y, qp = sample_batch(ctx.train, rng, settings.batch, settings.patch)
        batches.append((x, qp) if takes_qp(model) else (x,))
    return batches


def keep_zeros(model: nn.Module) -> None:
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
