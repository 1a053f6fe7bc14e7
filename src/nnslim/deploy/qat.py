"""Quantization-aware fine-tuning before int8 export: the filter trains with int8 rounding in its forward pass.

Every convolution's weight is rounded per output channel to symmetric int8 (what ONNX Runtime's
per-channel quantizer does), and its output to 256 uniform levels over a running range (its uint8
activations), with straight-through gradients. Training uses the training split only, against the
original frames, so it may also win back some of what compression lost. The fine-tuned float
weights are then exported and calibrated as usual; the loss is measured on validation as always.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.compress.quantize import FakeQuant
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from nnslim.models.train import TrainConfig, finetune

LEVELS = 255
MOMENTUM = 0.01
"""Weight of each batch's range in the running range."""


@dataclass(frozen=True)
class QatConfig:
    """How long and how fast the fine-tuning runs.

    Attributes:
        steps: Optimiser steps (none: no fine-tuning).
        lr: Adam's learning rate at the start, decayed along a cosine to 2% of it (``learning_rate``).
        batch: Patches per step.
        patch: Patch side in luma samples.
        seed: Seeds the patch draws.
    """

    steps: int = 0
    lr: float = 2e-4
    batch: int = 16
    patch: int = 64
    seed: int = 0


class ActivationRange(nn.Module):
    """Rounds a tensor to 256 levels over a running min-max range that always holds zero (uint8 with a zero point)."""

    def __init__(self) -> None:
        super().__init__()
        self.low: float | None = None
        self.high: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = float(x.detach().min()), float(x.detach().max())
        if self.low is None or self.high is None:
            self.low, self.high = low, high
        elif self.training:
            self.low += MOMENTUM * (low - self.low)
            self.high += MOMENTUM * (high - self.high)
        low, high = min(self.low, 0.0), max(self.high, 0.0)
        scale = max(high - low, 1e-8) / LEVELS
        return torch.fake_quantize_per_tensor_affine(x, scale, round(-low / scale), 0, LEVELS)


def _convolutions(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def quantization_aware(
    model: nn.Module,
    pairs: Sequence[LumaPairs],
    config: QatConfig,
    on_step: Callable[[int], None] | None = None,
) -> nn.Module:
    """A copy of the filter fine-tuned with int8 weights and uint8 convolution outputs in its forward pass.

    Args:
        model: The float filter (not changed).
        pairs: Decoded and original frames to train on: the training split only.
        config: Steps and learning rate; no steps gives an unchanged copy.
        on_step: Called with each finished step.

    Returns:
        The fine-tuned float filter, in eval mode on the CPU, with no trace of the rounding.
    """
    tuned = copy.deepcopy(model).cpu()
    if config.steps < 1:
        return tuned.eval()
    hooks = []
    for conv in _convolutions(tuned):
        parametrize.register_parametrization(conv, "weight", FakeQuant(8, per_channel=True))
        rounding = ActivationRange()
        hooks.append(conv.register_forward_hook(lambda _m, _i, out, r=rounding: r(out)))
    settings = TrainConfig(
        ArchSpec(type(model).__name__), steps=config.steps, batch=config.batch, patch=config.patch, lr=config.lr,
        warmup=0, seed=config.seed,
    )  # fmt: skip
    finetune(tuned, list(pairs), settings, on_step)
    for hook in hooks:
        hook.remove()
    for conv in _convolutions(tuned):
        parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
    return tuned.eval()
