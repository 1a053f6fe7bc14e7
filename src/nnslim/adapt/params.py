"""What a content-adaptive update changes in a filter, and how an update is applied.

An update is one float32 vector: the changes of the adapted parameters, laid end to end in the
order ``adapted`` gives (the decoder knows the base filter, so it knows that order). Each mode
names what adapts; everything else stays frozen:

- ``biases``: the bias of every convolution and linear layer (the cheapest update; Nokia's
  bias-only overfitting of a post-filter).
- ``multipliers``: one scale per output channel of every convolution, initialised to 1 and
  folded into that layer's weight and bias when the update is applied, so the deployed filter
  has no extra layer (Nokia's per-channel multipliers). The vector holds ``scale - 1``.
- ``affine``: both: per output channel of every convolution, a scale and a shift
  (``y = m * (W x + b + db)``); the multipliers come first in the vector, then the biases.
- ``last``: the weight and bias of the layers that write the filter's output.
- ``none``: nothing (the switch alone).
"""

from __future__ import annotations

import copy
from typing import Literal, cast

import numpy as np
import torch
from torch import nn

from nnslim.compress.graph import trace
from nnslim.errors import NnslimError

Mode = Literal["biases", "multipliers", "affine", "last", "none"]
MODES: tuple[Mode, ...] = ("biases", "multipliers", "affine", "last", "none")
MULTIPLIER = "multiplier"
"""Name of the per-channel scale a ``multipliers`` or ``affine`` model carries on each convolution while it trains."""
SHIFT = "shift"
"""Name of the per-channel bias change a ``biases`` or ``affine`` model carries on each layer while it trains.

It is added to the layer's output, which is the same as training the bias itself, but spares
the convolution's backward pass the weight gradient that a trainable bias makes PyTorch compute.
"""

STARTS = {MULTIPLIER: 1.0, SHIFT: 0.0}
"""What a new multiplier or shift starts from; an update holds its change from that."""


def check_mode(mode: str) -> Mode:
    """``mode`` if it is one of ``MODES``.

    Raises:
        NnslimError: Another name.
    """
    if mode not in MODES:
        raise NnslimError(f"--adapt must be one of {', '.join(MODES)}, not {mode!r}")
    return cast(Mode, mode)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _output_layers(model: nn.Module) -> set[str]:
    ends = trace(model).output_layers
    return {name for name, _ in _layers(model) if any(name == e or name.startswith(e + ".") for e in ends)}


def adapted(model: nn.Module, mode: Mode) -> list[tuple[str, tuple[int, ...]]]:
    """The parameters an update of ``mode`` changes, in vector order, with their shapes.

    A name is ``LAYER.multiplier`` (one scale per output channel), ``LAYER.shift`` (the change
    of the layer's bias) or a parameter's own name (``last``).
    """
    if mode == "none":
        return []
    if mode == "affine":
        return adapted(model, "multipliers") + adapted(model, "biases")
    if mode == "multipliers":
        return [(f"{name}.{MULTIPLIER}", (m.out_channels,)) for name, m in _layers(model) if isinstance(m, nn.Conv2d)]
    params = dict(model.named_parameters())
    if mode == "biases":
        biases = [(name, params.get(f"{name}.bias")) for name, _ in _layers(model)]
        return [(f"{name}.{SHIFT}", tuple(bias.shape)) for name, bias in biases if bias is not None]
    last = _output_layers(model)
    return [(key, tuple(params[key].shape)) for name in sorted(last) for key in (f"{name}.weight", f"{name}.bias")
            if key in params]  # fmt: skip


def size(model: nn.Module, mode: Mode) -> int:
    """Values in an update of ``mode`` for this filter."""
    return sum(int(np.prod(shape)) for _, shape in adapted(model, mode))


def _per_channel(module: nn.Module, value: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.Linear):
        return value
    return value.view(1, -1, *([1] * (output.dim() - 2)))


def _adapt_output(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    if hasattr(module, SHIFT):
        output = output + _per_channel(module, getattr(module, SHIFT), output)
    if hasattr(module, MULTIPLIER):
        output = output * _per_channel(module, getattr(module, MULTIPLIER), output)
    return output


def _split(name: str) -> tuple[str, str]:
    layer, _, kind = name.rpartition(".")
    return layer, kind


def trainable(base: nn.Module, mode: Mode) -> nn.Module:
    """A copy of the filter in which only what ``mode`` adapts can train.

    Multipliers (ones) and shifts (zeros) are new parameters on their layers, applied to the
    layer's output by a forward hook; ``vector`` reads them and ``apply_update`` folds them.
    """
    model = copy.deepcopy(base)
    for p in model.parameters():
        p.requires_grad_(False)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    for name, shape in adapted(base, mode):
        layer, kind = _split(name)
        if kind not in (MULTIPLIER, SHIFT):
            params[name].requires_grad_(True)
            continue
        module = modules[layer]
        if not hasattr(module, MULTIPLIER) and not hasattr(module, SHIFT):
            module.register_forward_hook(_adapt_output)
        module.register_parameter(kind, nn.Parameter(torch.full(shape, STARTS[kind])))
    return model


def vector(base: nn.Module, tuned: nn.Module, mode: Mode) -> np.ndarray:
    """The update that turns ``base`` into ``tuned`` (a ``trainable`` copy after training), as float32."""
    now = dict(tuned.named_parameters())
    before = dict(base.named_parameters())
    parts = []
    for name, _ in adapted(base, mode):
        origin = STARTS.get(_split(name)[1])
        change = now[name].detach() - (before[name].detach() if origin is None else origin)
        parts.append(change.numpy().ravel())
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def apply_update(base: nn.Module, mode: Mode, update: np.ndarray) -> nn.Module:
    """A copy of ``base`` with the update applied (shifts added to biases, then multipliers folded into
    weights and biases), in eval mode.

    The encoder evaluates exactly this model, from the update as the decoder decodes it, so that
    decoding gives the same output bit for bit.

    Raises:
        NnslimError: An update of another length than ``mode`` takes for this filter.
    """
    wanted = size(base, mode)
    if update.shape != (wanted,):
        raise NnslimError(f"the update holds {update.size} values; a {mode} update of this filter holds {wanted}")
    model = copy.deepcopy(base).eval()
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    changes, start = {}, 0
    for name, shape in adapted(base, mode):
        count = int(np.prod(shape))
        changes[name] = torch.from_numpy(update[start : start + count].reshape(shape).copy())
        start += count
    with torch.no_grad():
        for name, change in changes.items():
            layer, kind = _split(name)
            if kind == SHIFT:
                modules[layer].bias.add_(change)
            elif kind != MULTIPLIER:
                params[name].add_(change)
        for name, change in changes.items():  # after the shifts: a multiplier scales the shifted output
            layer, kind = _split(name)
            if kind == MULTIPLIER:
                conv = modules[layer]
                scale = 1.0 + change
                conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
                if conv.bias is not None:
                    conv.bias.mul_(scale)
    return model
