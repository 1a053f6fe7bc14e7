"""The shapes of a filter's layers as data, so that a compressed filter rebuilds without pickle.

Compression changes layer shapes (fewer channels after pruning, two thin convolutions after a
low-rank split). A compressed filter is saved as its architecture name and arguments, plus a
table of the layers whose shapes differ from what the architecture builds. Loading builds the
architecture, replaces those layers by fresh ones of the recorded shapes, and loads the state dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnslim.errors import NnslimError


class SeparableConv2d(nn.Module):
    """A d x d convolution (N <- C) replaced by a d x 1 one (K <- C) then a 1 x d one (N <- K).

    Args:
        in_channels: C.
        rank: K, the channels between the two convolutions.
        out_channels: N.
        kernel_size: d.
        padding: Zero padding of the original convolution, split between the two.
        bias: Whether the second convolution has a bias (the original's).
    """

    def __init__(self, in_channels: int, rank: int, out_channels: int, kernel_size: int, padding: int, bias: bool):
        super().__init__()
        self.vertical = nn.Conv2d(in_channels, rank, (kernel_size, 1), padding=(padding, 0), bias=False)
        self.horizontal = nn.Conv2d(rank, out_channels, (1, kernel_size), padding=(0, padding), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(x))


def _pair(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, tuple | list) else [int(value)] * 2


def describe(module: nn.Module) -> dict[str, Any] | None:
    """The shape of one layer as JSON-able data, or None for a layer with no shape of its own."""
    if isinstance(module, SeparableConv2d):
        v, h = module.vertical, module.horizontal
        return {
            "type": "SeparableConv2d",
            "in_channels": v.in_channels,
            "rank": v.out_channels,
            "out_channels": h.out_channels,
            "kernel_size": v.kernel_size[0],
            "padding": v.padding[0] if isinstance(v.padding, tuple) else v.padding,
            "bias": h.bias is not None,
        }
    if type(module) is nn.Conv2d:
        return {
            "type": "Conv2d",
            "in_channels": module.in_channels,
            "out_channels": module.out_channels,
            "kernel_size": _pair(module.kernel_size),
            "stride": _pair(module.stride),
            "padding": module.padding if isinstance(module.padding, str) else _pair(module.padding),
            "dilation": _pair(module.dilation),
            "groups": module.groups,
            "bias": module.bias is not None,
            "padding_mode": module.padding_mode,
        }
    if type(module) is nn.Linear:
        return {
            "type": "Linear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "bias": module.bias is not None,
        }
    if type(module) is nn.BatchNorm2d:
        return {
            "type": "BatchNorm2d",
            "num_features": module.num_features,
            "eps": module.eps,
            "momentum": module.momentum,
            "affine": module.affine,
            "track_running_stats": module.track_running_stats,
        }
    if type(module) is nn.PReLU:
        return {"type": "PReLU", "num_parameters": module.num_parameters}
    return None


def create(spec: dict[str, Any]) -> nn.Module:
    """A fresh layer of the shape ``describe`` recorded.

    Raises:
        NnslimError: An unknown layer type or missing fields.
    """
    kind = spec.get("type")
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k != "type"}
    makers: dict[str, type[nn.Module]] = {
        "SeparableConv2d": SeparableConv2d,
        "Conv2d": nn.Conv2d,
        "Linear": nn.Linear,
        "BatchNorm2d": nn.BatchNorm2d,
        "PReLU": nn.PReLU,
    }
    if kind not in makers:
        raise NnslimError(f"unknown layer type {kind!r} in a layer table; known: {', '.join(makers)}")
    try:
        return makers[kind](**args)
    except TypeError as exc:
        raise NnslimError(f"bad {kind} layer {spec}: {exc}") from None


def table(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every shaped layer of a model by qualified name."""
    return {name: spec for name, module in model.named_modules() if name and (spec := describe(module)) is not None}


def changed(model: nn.Module, reference: nn.Module) -> dict[str, dict[str, Any]]:
    """The layers of ``model`` whose shapes differ from those of ``reference`` (what the architecture builds)."""
    ours, theirs = table(model), table(reference)
    return {name: spec for name, spec in ours.items() if theirs.get(name) != spec}


def apply(model: nn.Module, layers: dict[str, dict[str, Any]]) -> nn.Module:
    """Replace, in place, the named layers of a freshly built model by layers of the recorded shapes.

    Raises:
        NnslimError: A name that is not a layer (a submodule) of the model.
    """
    for name, spec in layers.items():
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
            if not attr:
                raise AttributeError(name)
            parent.get_submodule(attr)
        except AttributeError:
            raise NnslimError(f"layer table names {name!r}, which the architecture does not have") from None
        setattr(parent, attr, create(spec))
    return model


def ends(layer: nn.Module) -> tuple[nn.Conv2d | nn.Linear, nn.Conv2d | nn.Linear]:
    """The layer that reads a layer's input and the one that writes its output (the same for a plain one).

    Raises:
        NnslimError: A layer that is neither a Conv2d, a Linear nor a SeparableConv2d.
    """
    if isinstance(layer, SeparableConv2d):
        return layer.vertical, layer.horizontal
    if isinstance(layer, nn.Conv2d | nn.Linear):
        return layer, layer
    raise NnslimError(f"{type(layer).__name__} is not a convolution or linear layer")
