"""Activation-based pruning (BBC R&D): find the channels that calibration data barely uses.

Calibration frames run through the network while hooks record, for every layer that reads a
unit of channels, the mean, mean square, minimum and maximum of each input channel.

- A unit is *dead* when every layer that reads it either has no weights left for it (sparsity
  pruning zeroed them) or sees it constant. A constant channel's contribution is folded into the
  reading layer's bias before removal. Removal is then exact for channels that are always zero
  or unread; for a constant non-zero channel it is exact except within a kernel radius of the
  frame edge, where zero padding made the contribution position-dependent.
- Every other unit is scored by what it contributes: its RMS activation times the norm of the
  weights that read it, summed over its readers. The lowest-scored units are removed first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from nnslim.compress.graph import ChannelGraph
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.layers import SeparableConv2d


@dataclass
class ChannelStats:
    """Running statistics of one layer's input channels."""

    count: int
    total: torch.Tensor
    squares: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def rms(self) -> torch.Tensor:
        return (self.squares / max(self.count, 1)).sqrt()


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(0, 1).reshape(x.shape[1], -1).double()


def calibrate(
    model: nn.Module, graph: ChannelGraph, batches: Iterable[tuple[torch.Tensor, ...]]
) -> dict[str, ChannelStats]:
    """Run calibration batches and record the input-channel statistics of every reading layer.

    Args:
        model: The traced network.
        graph: Its channel graph.
        batches: Model inputs, e.g. ``(decoded,)`` or ``(decoded, qp)``.
    """
    stats: dict[str, ChannelStats] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = _channels_first(inputs[0].detach())
            s = stats.get(name)
            if s is None:
                stats[name] = ChannelStats(x.shape[1], x.sum(1), (x * x).sum(1), x.min(1).values, x.max(1).values)
            else:
                s.count += x.shape[1]
                s.total += x.sum(1)
                s.squares += (x * x).sum(1)
                s.low = torch.minimum(s.low, x.min(1).values)
                s.high = torch.maximum(s.high, x.max(1).values)

        return hook

    hooks = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in graph.inputs]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in batches:
                model(*batch)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return stats


def _reading_weight(layer: nn.Module, index: int) -> torch.Tensor:
    """The weights through which a layer reads one input channel (output first)."""
    return layers.ends(layer)[0].weight[:, index]


def _contribution(layer: nn.Module, index: int) -> torch.Tensor:
    """What one unit of a constant input channel adds to each output channel of the layer."""
    if isinstance(layer, SeparableConv2d):
        vertical = layer.vertical.weight[:, index].sum(dim=(-1, -2))
        return layer.horizontal.weight.sum(dim=(-1, -2)) @ vertical
    w = layers.ends(layer)[0].weight[:, index]
    return w.sum(dim=(-1, -2)) if w.dim() == 3 else w


def _bias_of(layer: nn.Module) -> torch.Tensor | None:
    return layers.ends(layer)[1].bias


@torch.no_grad()
def dead_units(
    model: nn.Module, graph: ChannelGraph, stats: dict[str, ChannelStats], tolerance: float = 1e-6
) -> list[int]:
    """Units no reader depends on: no weights left for them, or constant (foldable into a bias).

    One unit of a group is always left, so that no layer loses all its channels.
    """
    dead = []
    for unit in graph.units():
        ok = True
        for name, indices in graph.consumers(unit):
            layer = model.get_submodule(name)
            for i in indices:
                unread = bool((_reading_weight(layer, i) == 0).all())
                constant = float(stats[name].high[i] - stats[name].low[i]) <= tolerance
                foldable = constant and (float(stats[name].mean[i]) == 0.0 or _bias_of(layer) is not None)
                ok = ok and (unread or foldable)
        if ok:
            dead.append(unit)
    for units in graph.groups().values():  # a layer keeps at least one channel, even an unused one
        if all(u in dead for u in units):
            dead.remove(units[0])
    return dead


def fold_constants(model: nn.Module, graph: ChannelGraph, stats: dict[str, ChannelStats], units: Iterable[int]) -> None:
    """Add the contribution of constant channels to the biases of the layers that read them (in place)."""
    with torch.no_grad():
        for unit in units:
            for name, indices in graph.consumers(unit):
                layer = model.get_submodule(name)
                bias = _bias_of(layer)
                for i in indices:
                    value = float(stats[name].mean[i])
                    if value != 0.0 and bias is not None:
                        bias += value * _contribution(layer, i)


@torch.no_grad()
def scores(model: nn.Module, graph: ChannelGraph, stats: dict[str, ChannelStats]) -> dict[int, float]:
    """Each prunable unit's contribution: RMS activation times reading-weight norm, summed over readers."""
    out = {}
    for unit in graph.units():
        total = 0.0
        for name, indices in graph.consumers(unit):
            layer = model.get_submodule(name)
            for i in indices:
                total += float(stats[name].rms[i]) * float(_reading_weight(layer, i).norm())
        out[unit] = total
    return out


def lowest(
    graph: ChannelGraph,
    unit_scores: dict[int, float],
    fraction: float,
    round_to: int = 8,
    minimum: int = 8,
    ranking: str = "global",
) -> list[int]:
    """The lowest-scored units to remove so that about ``fraction`` of all units go.

    With ``ranking="global"`` all units compete in one ranking, so a group whose units are read
    by many layers (a residual stream) scores high and is rarely cut. With ``"group"`` every
    group loses ``fraction`` of its own units, its lowest-scored first, so that the residual
    stream shrinks along with the layers inside the blocks.

    Each group (units made by the same first producer) keeps at least ``minimum`` units, and
    its count is rounded to the nearest multiple of ``round_to``, since CPU convolution kernels
    run fastest on channel counts that are multiples of their vector width.
    """
    if ranking not in ("global", "group"):
        raise NnslimError(f"ranking must be global or group, not {ranking!r}")
    groups = graph.groups()
    ranked = sorted(unit_scores, key=unit_scores.__getitem__)
    chosen = set(ranked[: round(fraction * len(ranked))])
    removed: list[int] = []
    for units in groups.values():
        size = len(units)
        by_score = sorted(units, key=unit_scores.__getitem__)
        cut = round(fraction * size) if ranking == "group" else sum(u in chosen for u in units)
        keep = size - cut
        if round_to > 1:
            keep = min(size, round_to * round(keep / round_to))
        keep = max(keep, min(minimum, size))
        removed.extend(by_score[: size - keep])
    return removed
