"""Which channels of a network must be removed together: a channel graph traced with ``torch.fx``.

Every tensor's channel dimension (dim 1) is a list of channel ids. A convolution makes new
ids for its outputs; pointwise layers, BatchNorm and PReLU pass them on; adding or
multiplying two tensors (residual additions, squeeze-excitation gates) joins their ids, so
coupled channels become one; concatenation lays lists end to end; PixelShuffle joins each group
of r*r input channels into one output channel, and PixelUnshuffle spreads one input channel over
r*r outputs. The joined ids are the units of pruning: removing a unit removes the matching
output channels of every producer and input channels of every consumer.

Units that reach the model's input or output are fixed. An operation or layer the graph does not
understand is refused by name, never passed over.

Torch-Pruning 1.6.1 was the first choice, but its dependency graph treats PixelShuffle as a
pointwise operation: pruning 4 channels before a PixelShuffle(2) removes 4 input channels of the
next convolution instead of 1, and the network no longer runs.
"""

from __future__ import annotations

import inspect
import operator
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from nnslim.errors import NnslimError
from nnslim.models.filters import takes_qp
from nnslim.models.layers import SeparableConv2d

PRODUCERS = (nn.Conv2d, nn.Linear)
CHANNELWISE = (nn.BatchNorm2d, nn.PReLU)
POINTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.SiLU,
    nn.GELU,
    nn.ELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,
    nn.Dropout,
    nn.BatchNorm2d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.Upsample,
)
POINTWISE_FUNCTIONS = {
    torch.relu,
    torch.sigmoid,
    torch.tanh,
    torch.clamp,
    torch.abs,
    torch.neg,
    torch.exp,
    F.relu,
    F.leaky_relu,
    F.gelu,
    F.silu,
    F.sigmoid,
    F.hardtanh,
    F.adaptive_avg_pool2d,
    F.avg_pool2d,
    F.max_pool2d,
    F.interpolate,
    operator.neg,
}
POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "clamp", "abs", "neg", "exp", "contiguous", "float", "clone"}
BINARY = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.maximum,
    torch.minimum,
}
BINARY_METHODS = {"add", "sub", "mul", "div"}
RESHAPES = {torch.reshape, torch.flatten, torch.unsqueeze, torch.squeeze}
RESHAPE_METHODS = {"view", "reshape", "flatten", "unsqueeze", "squeeze", "expand", "expand_as", "view_as"}
REDUCTIONS = {torch.mean, torch.sum, torch.amax}
REDUCTION_METHODS = {"mean", "sum", "amax"}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self, count: int) -> list[int]:
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return list(range(start, start + count))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class ChannelGraph:
    """Channel ids of every prunable layer's inputs and outputs, after tracing.

    Attributes:
        model: The traced model (the graph refers to its layers by qualified name).
        outputs: Per producer layer (Conv2d/Linear), the unit of each output channel.
        inputs: Per consumer layer (Conv2d/Linear), the unit of each input channel.
        channelwise: Per BatchNorm2d/PReLU layer, the unit of each channel.
        fixed: Units that reach the model's input or output, or are mixed across channels.
        output_layers: Producer layers whose output reaches the model's output through no other producer.
    """

    model: nn.Module
    outputs: dict[str, list[int]] = field(default_factory=dict)
    inputs: dict[str, list[int]] = field(default_factory=dict)
    channelwise: dict[str, list[int]] = field(default_factory=dict)
    fixed: set[int] = field(default_factory=set)
    output_layers: list[str] = field(default_factory=list)

    def units(self) -> list[int]:
        """The prunable units, in the order their first producer appears."""
        seen: dict[int, None] = {}
        for ids in self.outputs.values():
            for unit in ids:
                if unit not in self.fixed:
                    seen.setdefault(unit)
        return list(seen)

    def groups(self) -> dict[str, list[int]]:
        """Prunable units by the first producer layer that makes them (a residual stream is one group)."""
        owner: dict[int, str] = {}
        for name, ids in self.outputs.items():
            for unit in ids:
                owner.setdefault(unit, name)
        out: dict[str, list[int]] = defaultdict(list)
        for unit in self.units():
            out[owner[unit]].append(unit)
        return dict(out)

    def consumers(self, unit: int) -> Iterator[tuple[str, list[int]]]:
        """(layer, input channel indices) of every layer that reads this unit."""
        for name, ids in self.inputs.items():
            hits = [i for i, u in enumerate(ids) if u == unit]
            if hits:
                yield name, hits

    def producers(self, unit: int) -> Iterator[tuple[str, list[int]]]:
        """(layer, output channel indices) of every layer that writes this unit."""
        for name, ids in self.outputs.items():
            hits = [i for i, u in enumerate(ids) if u == unit]
            if hits:
                yield name, hits


def example_input(model: nn.Module, size: int = 32) -> tuple[torch.Tensor, ...]:
    """A small luma batch (and QP when the filter takes one) to trace a filter with."""
    x = torch.rand(1, 1, size, size)
    return (x, torch.full((1,), 37.0)) if takes_qp(model) else (x,)


class _Tracer(fx.Tracer):
    """Keeps SeparableConv2d whole, so the graph sees one layer with the original's channels."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SeparableConv2d) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> ChannelGraph:
    """Trace a filter and find its units of pruning.

    Raises:
        NnslimError: The model cannot be traced, or uses a layer or operation that would
            break if channels were removed (named in the message).
    """
    args = example_input(model)
    optional_qp = len(args) == 1 and "qp" in inspect.signature(model.forward).parameters
    try:
        graph = _Tracer().trace(model, concrete_args={"qp": None} if optional_qp else None)
    except Exception as exc:  # fx raises many kinds on untraceable Python
        raise NnslimError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from None
    module = fx.GraphModule(model, graph)
    was_training = model.training
    model.eval()  # no BatchNorm statistics change while shapes are found
    try:
        with torch.no_grad():
            ShapeProp(module).propagate(*args)
    finally:
        model.train(was_training)
    result = _Walker(model).run(graph)
    result.output_layers = _output_layers(graph, result)
    return result


def _output_layers(graph: fx.Graph, channels: ChannelGraph) -> list[str]:
    """Producers reached by walking back from the output through anything but another producer."""
    found: list[str] = []
    seen: set[fx.Node] = set()
    stack = [node for node in graph.nodes if node.op == "output"]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "call_module" and str(node.target) in channels.outputs:
            found.append(str(node.target))
            continue
        stack.extend(node.all_input_nodes)
    return sorted(found)


def _shape(node: Any) -> torch.Size | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return getattr(meta, "shape", None)


class _Walker:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.uf = _UnionFind()
        self.ids: dict[fx.Node, list[int] | None] = {}
        self.result = ChannelGraph(model)
        self.fixed_ids: list[int] = []

    def run(self, graph: fx.Graph) -> ChannelGraph:
        for node in graph.nodes:
            self.ids[node] = self._visit(node)
        r = self.result
        find = self.uf.find
        r.outputs = {k: [find(i) for i in v] for k, v in r.outputs.items()}
        r.inputs = {k: [find(i) for i in v] for k, v in r.inputs.items()}
        r.channelwise = {k: [find(i) for i in v] for k, v in r.channelwise.items()}
        r.fixed = {find(i) for i in self.fixed_ids}
        return r

    def _arg_ids(self, arg: Any) -> list[int] | None:
        return self.ids.get(arg) if isinstance(arg, fx.Node) else None

    def _fix(self, ids: list[int] | None) -> None:
        if ids:
            self.fixed_ids.extend(ids)

    def _visit(self, node: fx.Node) -> list[int] | None:
        shape = _shape(node)
        if node.op == "placeholder":
            if shape is None or len(shape) < 2:
                return None
            ids = self.uf.new(shape[1])
            self._fix(ids)
            return ids
        if node.op == "output":
            for arg in node.all_input_nodes:
                self._fix(self.ids.get(arg))
            return None
        if node.op == "get_attr":
            raise NnslimError(
                f"operation {node.name!r} reads tensor {node.target!r} directly; only layers can be pruned"
            )
        if node.op == "call_module":
            return self._module(node, self.model.get_submodule(str(node.target)))
        return self._function(node, shape)

    def _module(self, node: fx.Node, layer: nn.Module) -> list[int] | None:
        name = str(node.target)
        ins = self._arg_ids(node.args[0])
        if isinstance(layer, SeparableConv2d):
            layer = layer.vertical
        if isinstance(layer, PRODUCERS):
            return self._producer(node, name, layer, ins)
        if isinstance(layer, nn.PixelShuffle | nn.PixelUnshuffle):
            return self._shuffle(layer, ins)
        if isinstance(layer, POINTWISE_MODULES):
            if isinstance(layer, CHANNELWISE) and ins is not None:
                width = layer.num_features if isinstance(layer, nn.BatchNorm2d) else layer.num_parameters
                if width > 1:
                    self.result.channelwise[name] = ins
            return ins
        raise NnslimError(f"unsupported layer {name!r} ({type(layer).__name__}): channels cannot be removed around it")

    def _producer(self, node: fx.Node, name: str, layer: nn.Module, ins: list[int] | None) -> list[int]:
        if isinstance(layer, nn.Linear):
            in_shape = _shape(node.args[0])
            if in_shape is None or len(in_shape) != 2:
                raise NnslimError(f"unsupported layer {name!r}: Linear is supported on (batch, channels) only")
        elif isinstance(layer, nn.Conv2d) and layer.groups != 1:
            if layer.groups == layer.in_channels == layer.out_channels and ins is not None:
                self.result.channelwise[name] = ins
                return ins
            raise NnslimError(f"unsupported layer {name!r}: grouped convolution ({layer.groups} groups)")
        if ins is None:
            raise NnslimError(f"layer {name!r} reads a tensor of unknown channels")
        self.result.inputs[name] = ins
        outs = self.uf.new(_shape(node)[1])  # type: ignore[index]
        self.result.outputs[name] = outs
        return outs

    def _shuffle(self, layer: nn.PixelShuffle | nn.PixelUnshuffle, ins: list[int] | None) -> list[int] | None:
        if ins is None:
            return None
        if isinstance(layer, nn.PixelShuffle):
            group = layer.upscale_factor**2
            for start in range(0, len(ins), group):
                for other in ins[start + 1 : start + group]:
                    self.uf.join(ins[start], other)
            return ins[::group]
        group = layer.downscale_factor**2
        return [unit for unit in ins for _ in range(group)]

    def _function(self, node: fx.Node, shape: torch.Size | None) -> list[int] | None:
        target = node.target
        tensors = [a for a in node.all_input_nodes if _shape(a) is not None]
        arg_ids = [self.ids.get(a) for a in tensors]
        if shape is None:  # a size, a shape, a number: no channels
            return None
        if all(ids is None for ids in arg_ids):  # e.g. the QP plane, built from a QP vector
            return None
        method = node.op == "call_method"
        name = str(target)
        if (method and name in BINARY_METHODS) or (not method and target in BINARY):
            return self._binary([self._known(a) for a in tensors if len(_shape(a) or ()) >= 2], node)
        if (method and name in POINTWISE_METHODS) or (not method and target in POINTWISE_FUNCTIONS):
            return arg_ids[0]
        if (method and name in RESHAPE_METHODS) or (not method and target in RESHAPES):
            return self._reshape(node, tensors[0], arg_ids[0])
        if (method and name in REDUCTION_METHODS) or (not method and target in REDUCTIONS):
            return self._reduction(node, arg_ids[0])
        if not method and target is torch.cat:
            return self._cat(node)
        if not method and target in (F.pixel_shuffle, F.pixel_unshuffle):
            factor = int(str(node.args[1]))
            shuffle = nn.PixelShuffle(factor) if target is F.pixel_shuffle else nn.PixelUnshuffle(factor)
            return self._shuffle(shuffle, arg_ids[0])
        raise NnslimError(f"unsupported operation {name!r} at {node.name!r}: channels cannot be removed around it")

    def _known(self, node: fx.Node) -> list[int]:
        """The ids of a tensor; a tensor of unknown channels gets fixed fresh ones."""
        ids = self.ids.get(node)
        if ids is None:
            ids = self.uf.new(_shape(node)[1])  # type: ignore[index]
            self._fix(ids)
        return ids

    def _binary(self, operands: list[list[int]], node: fx.Node) -> list[int]:
        base = max(operands, key=len)
        for ids in operands:
            if len(ids) == len(base):
                for a, b in zip(base, ids, strict=True):
                    self.uf.join(a, b)
            elif len(ids) == 1:
                self._fix(ids)
            else:
                raise NnslimError(f"operation {node.name!r} combines {len(ids)} and {len(base)} channels")
        return base

    def _reshape(self, node: fx.Node, source: fx.Node, ids: list[int] | None) -> list[int] | None:
        before, after = _shape(source), _shape(node)
        if ids is None:
            return None
        if before is not None and after is not None and len(after) >= 2 and after[:2] == before[:2]:
            return ids
        raise NnslimError(f"operation {node.name!r} ({node.target}) reshapes the channel dimension")

    def _reduction(self, node: fx.Node, ids: list[int] | None) -> list[int] | None:
        raw = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        dims = (raw,) if isinstance(raw, int) else tuple(raw) if isinstance(raw, tuple | list) else None
        if dims is not None and 1 not in dims and -3 not in dims:
            return ids
        self._fix(ids)
        return None

    def _cat(self, node: fx.Node) -> list[int]:
        parts = [self._known(p) for p in node.args[0] if isinstance(p, fx.Node)]  # type: ignore[union-attr]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if dim == 1:
            return [unit for ids in parts for unit in ids]
        return self._binary(parts, node)
