"""Magnitude pruning: zero the smallest weights and keep them zero while fine-tuning.

This is the pruning step of Deep Compression (Han et al. 2016), also used by BBC R&D on their
in-loop filters: a boolean keep-mask per layer, applied as a ``Mask`` parametrization on the
layer's weight, tightened gradually with the cubic schedule of Zhu & Gupta (2017).

Unstructured sparsity alone makes nothing faster: dense convolution kernels multiply the zeros
all the same. It pays off in two other ways: a channel whose weights are all zero becomes
removable by activation pruning, and the sparse coders of the bitstream spend almost nothing on zeros.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.compress.constraints import parametrizations_of
from nnslim.errors import NnslimError

SCOPES = ("global", "layer")
MAX_LAYER_SPARSITY = 0.9
"""No layer loses more than this share of its weights, whatever the global threshold says: a layer
with all its weights zero would cut the network (an output layer that starts at zero, as residual
filters do, keeps the smallest weights after a short training and would be emptied first)."""


class Mask(nn.Module):
    """A parametrization that multiplies a weight by a fixed boolean keep-mask (a buffer)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def prunable_weights(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, nn.Conv2d | nn.Linear]:
    """The Conv2d and Linear layers of a model, including those inside SeparableConv2d, by qualified name.

    Args:
        model: The filter.
        names: Keep only these layers; all of them when None.

    Raises:
        NnslimError: A name that is not a Conv2d or Linear layer of the model.
    """
    layers: dict[str, nn.Conv2d | nn.Linear] = {
        name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }
    if names is None:
        return layers
    chosen: dict[str, nn.Conv2d | nn.Linear] = {}
    for name in names:
        if name not in layers:
            raise NnslimError(f"{name!r} is not a Conv2d or Linear layer of the model")
        chosen[name] = layers[name]
    return chosen


def _check_fraction(value: float, what: str) -> None:
    if not 0.0 <= value < 1.0:
        raise NnslimError(f"{what} must be in [0, 1), got {value}")


def _keep_largest(magnitude: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask that zeros the given fraction of the smallest magnitudes, and every zero."""
    flat = magnitude.flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[: round(sparsity * flat.numel())]] = False
    return (keep & (flat != 0)).view_as(magnitude)


def magnitude_masks(
    model: nn.Module,
    sparsity: float,
    scope: str = "global",
    skip: Iterable[str] = (),
    max_layer_sparsity: float = MAX_LAYER_SPARSITY,
) -> dict[str, torch.Tensor]:
    """Boolean keep-masks that zero the smallest weights.

    Weights that are already zero (earlier pruning included) count as pruned and stay pruned.
    Biases are never pruned. No layer is pruned beyond ``max_layer_sparsity`` of its weights:
    under a global threshold, a layer that would lose more keeps its largest weights instead.

    Args:
        model: The filter; a layer's current (masked) weight is what gets ranked.
        sparsity: Fraction of the weights to zero, in [0, 1).
        scope: ``global`` ranks all layers' magnitudes together (one threshold); ``layer`` zeros
            that fraction in every layer.
        skip: Names of layers to leave dense (for instance the first and last convolutions).
        max_layer_sparsity: The largest share of any one layer's weights set to zero, in [0, 1).

    Returns:
        A keep-mask (True = keep) per pruned layer, shaped like its weight.

    Raises:
        NnslimError: A sparsity out of range, an unknown scope, or a skipped name that is not a layer.
    """
    _check_fraction(sparsity, "sparsity")
    _check_fraction(max_layer_sparsity, "max_layer_sparsity")
    if scope not in SCOPES:
        raise NnslimError(f"unknown pruning scope {scope!r}; choose from {', '.join(SCOPES)}")
    skipped = set(prunable_weights(model, skip))
    magnitudes = {
        name: layer.weight.detach().abs() for name, layer in prunable_weights(model).items() if name not in skipped
    }
    if scope == "layer":
        return {name: _keep_largest(m, min(sparsity, max_layer_sparsity)) for name, m in magnitudes.items()}
    if not magnitudes:
        return {}
    keep = _keep_largest(torch.cat([m.flatten() for m in magnitudes.values()]), sparsity)
    pieces = keep.split([m.numel() for m in magnitudes.values()])
    masks = {name: piece.view_as(m) for (name, m), piece in zip(magnitudes.items(), pieces, strict=True)}
    return {
        name: _keep_largest(magnitudes[name], max_layer_sparsity) if _zero_share(mask) > max_layer_sparsity else mask
        for name, mask in masks.items()
    }


def _zero_share(keep: torch.Tensor) -> float:
    return 1.0 - int(keep.sum()) / max(keep.numel(), 1)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Constrain each named layer's weight to its keep-mask, in place.

    A layer without a mask gets a ``Mask`` parametrization; a layer that has one gets its mask
    replaced, so that a gradual schedule can tighten it.

    Raises:
        NnslimError: A name that is not a Conv2d or Linear layer, or a mask not shaped like the weight.
    """
    layers = prunable_weights(model, masks)
    for name, mask in masks.items():
        layer = layers[name]
        if mask.shape != layer.weight.shape:
            raise NnslimError(f"mask for {name} has shape {tuple(mask.shape)}, weight {tuple(layer.weight.shape)}")
        mask = mask.to(device=layer.weight.device, dtype=torch.bool)
        existing = next((p for p in parametrizations_of(layer) if isinstance(p, Mask)), None)
        if existing is None:
            parametrize.register_parametrization(layer, "weight", Mask(mask))
        else:
            existing.mask.copy_(mask)


def gradual_sparsity(step: int, steps: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's cubic schedule: s_t = final + (initial - final) * (1 - t / steps)^3, t clamped to [0, steps].

    Raises:
        NnslimError: Steps below 1, or a sparsity out of [0, 1).
    """
    if steps < 1:
        raise NnslimError(f"the sparsity schedule needs at least 1 step, got {steps}")
    _check_fraction(final, "final sparsity")
    _check_fraction(initial, "initial sparsity")
    progress = min(max(step / steps, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def sparsity_of(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all Conv2d and Linear weights (biases excluded).

    Raises:
        NnslimError: A model with no Conv2d or Linear layer.
    """
    weights = [layer.weight.detach() for layer in prunable_weights(model).values()]
    total = sum(w.numel() for w in weights)
    if total == 0:
        raise NnslimError("the model has no Conv2d or Linear weights to measure sparsity on")
    return sum(int((w == 0).sum()) for w in weights) / total
