"""Structural surgery: remove units of channels and get a smaller, plain, dense network.

The units come from :mod:`nnslim.compress.graph`. Removing one slices the output channels of
every layer that writes it, the input channels of every layer that reads it, and the channels
of the BatchNorm and PReLU layers it passes through. Nothing is masked: the layers are replaced
by smaller ones, so the result runs faster and exports smaller.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

from nnslim.compress.graph import ChannelGraph
from nnslim.errors import NnslimError
from nnslim.models import layers


def _keep(ids: list[int], removed: set[int]) -> torch.Tensor:
    return torch.tensor([i for i, unit in enumerate(ids) if unit not in removed], dtype=torch.long)


def _resized(layer: nn.Module, keep_in: torch.Tensor | None, keep_out: torch.Tensor | None) -> nn.Module:
    """A copy of a Conv2d, SeparableConv2d or Linear with only the kept input and output channels."""
    spec = layers.describe(layer)
    assert spec is not None
    inner, outer = ("in_features", "out_features") if isinstance(layer, nn.Linear) else ("in_channels", "out_channels")
    if keep_in is not None:
        spec[inner] = len(keep_in)
    if keep_out is not None:
        spec[outer] = len(keep_out)
    new = layers.create(spec)
    first, last = layers.ends(layer)
    new_first, new_last = layers.ends(new)
    with torch.no_grad():
        if first is last:
            w = first.weight
            w = w if keep_out is None else w[keep_out]
            new_first.weight.copy_(w if keep_in is None else w[:, keep_in])
        else:
            new_first.weight.copy_(first.weight if keep_in is None else first.weight[:, keep_in])
            new_last.weight.copy_(last.weight if keep_out is None else last.weight[keep_out])
        if last.bias is not None and new_last.bias is not None:
            new_last.bias.copy_(last.bias if keep_out is None else last.bias[keep_out])
    return new


def _channelwise(layer: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A copy of a BatchNorm2d, PReLU or depthwise Conv2d with only the kept channels."""
    spec = layers.describe(layer)
    assert spec is not None
    if isinstance(layer, nn.BatchNorm2d):
        spec["num_features"] = len(keep)
    elif isinstance(layer, nn.PReLU):
        spec["num_parameters"] = len(keep)
    else:
        spec["in_channels"] = spec["out_channels"] = spec["groups"] = len(keep)
    new = layers.create(spec)
    with torch.no_grad():
        for name, tensor in [*layer.named_parameters(recurse=False), *layer.named_buffers(recurse=False)]:
            if tensor is not None and tensor.dim() > 0:
                getattr(new, name).copy_(tensor[keep])
            elif tensor is not None:
                getattr(new, name).copy_(tensor)
    return new


def remove_units(model: nn.Module, graph: ChannelGraph, units: Iterable[int]) -> nn.Module:
    """A copy of ``model`` without the given units of channels.

    Args:
        model: The network ``graph`` was traced from.
        graph: Its channel graph.
        units: Prunable units (from ``graph.units()``) to remove.

    Raises:
        NnslimError: A fixed unit, or a removal that would leave a layer with no channels.
    """
    removed = set(units)
    if bad := removed & graph.fixed:
        raise NnslimError(f"{len(bad)} of the units to remove reach the model's input or output")
    replacements: dict[str, nn.Module] = {}
    for name in sorted(set(graph.inputs) | set(graph.outputs)):
        keep_in = _keep(graph.inputs[name], removed) if name in graph.inputs else None
        keep_out = _keep(graph.outputs[name], removed) if name in graph.outputs else None
        for kept in (keep_in, keep_out):
            if kept is not None and len(kept) == 0:
                raise NnslimError(f"removing these channels would leave layer {name!r} with none")
        replacements[name] = _resized(model.get_submodule(name), keep_in, keep_out)
    for name, ids in graph.channelwise.items():
        replacements[name] = _channelwise(model.get_submodule(name), _keep(ids, removed))
    slim = copy.deepcopy(model)
    for name, layer in replacements.items():
        parent, _, attr = name.rpartition(".")
        setattr(slim.get_submodule(parent), attr, layer.train(model.get_submodule(name).training))
    return slim
