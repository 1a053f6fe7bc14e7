"""Rewrites of the float ONNX graph into operations ONNX Runtime runs fast in int8, each exact in real arithmetic.

ONNX Runtime's quantizer has no int8 PReLU and no int8 ``ReduceMean``; left float, each costs a
dequantize, a slow float kernel and a quantize on a whole feature map (in the in-loop filter they
took half the int8 model's time). Two rewrites remove them:

- ``split_prelu``: a PReLU between two convolutions becomes a ReLU on twice the channels,
  ``PReLU(x) = relu(x) - a * relu(-x)``. The first convolution also computes ``-x`` (its weights
  and bias negated), and the second takes both halves, its weights for the second half scaled by
  ``-a``. Convolution plus ReLU is what int8 kernels do best; the cost is twice the MACs of
  those two convolutions.
- ``global_pool``: a ``ReduceMean`` over height and width with kept dimensions is a
  ``GlobalAveragePool``, which ONNX Runtime has in int8 and runs as one pass.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [node for node in graph.node if name in node.input]


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default


def _plain_conv(node: onnx.NodeProto | None, initializers: dict[str, onnx.TensorProto]) -> bool:
    """A one-group convolution whose weight (and bias, if any) are constants."""
    return (
        node is not None
        and node.op_type == "Conv"
        and _attribute(node, "group", 1) == 1
        and all(name in initializers for name in node.input[1:])
    )


def _replace(graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto], name: str, value: np.ndarray) -> None:
    graph.initializer.remove(initializers[name])
    initializers[name] = numpy_helper.from_array(value.astype(np.float32), name)
    graph.initializer.append(initializers[name])


def _slopes(initializers: dict[str, onnx.TensorProto], name: str, channels: int) -> np.ndarray | None:
    """A PReLU's slope per channel, or None when it is not a constant of one value per channel (or one for all)."""
    if name not in initializers:
        return None
    slope = numpy_helper.to_array(initializers[name]).astype(np.float64)
    if slope.size == 1:
        return np.full(channels, float(slope.reshape(())))
    if slope.size == channels and slope.shape[0] == channels:
        return slope.reshape(channels)
    return None


def _split_one(
    graph: onnx.GraphProto, initializers: dict[str, onnx.TensorProto], prelu: onnx.NodeProto, index: int
) -> bool:
    producers = {out: node for node in graph.node for out in node.output}
    first = producers.get(prelu.input[0])
    after = _consumers(graph, prelu.output[0])
    if not _plain_conv(first, initializers) or len(_consumers(graph, prelu.input[0])) != 1:
        return False
    if not after or not all(_plain_conv(node, initializers) and node.input[0] == prelu.output[0] for node in after):
        return False
    assert first is not None  # _plain_conv said so
    weight = numpy_helper.to_array(initializers[first.input[1]]).astype(np.float64)
    slope = _slopes(initializers, prelu.input[1], weight.shape[0])
    changed = [*first.input[1:], *(node.input[1] for node in after)]
    if slope is None or not all(len(_consumers(graph, name)) == 1 for name in changed):
        return False  # a constant shared with another node would change that node too
    _replace(graph, initializers, first.input[1], np.concatenate([weight, -weight]))
    if len(first.input) > 2:
        bias = numpy_helper.to_array(initializers[first.input[2]]).astype(np.float64)
        _replace(graph, initializers, first.input[2], np.concatenate([bias, -bias]))
    for node in after:
        second = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
        _replace(graph, initializers, node.input[1], np.concatenate([second, -second * slope[None, :, None, None]], 1))
    slope_name = prelu.input[1]
    relu = onnx.helper.make_node("Relu", [prelu.input[0]], [prelu.output[0]], name=f"{prelu.name}/split")
    graph.node.remove(prelu)
    graph.node.insert(index, relu)
    if not _consumers(graph, slope_name):
        graph.initializer.remove(initializers.pop(slope_name))
    return True


def split_prelu(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite each ``Conv -> PRelu -> Conv`` (constant weights, one group, a slope per channel) as Conv-Relu-Conv.

    Returns:
        A rewritten copy, and the number of PReLUs rewritten. Others are left as they are.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    count = 0
    for prelu in [node for node in graph.node if node.op_type == "PRelu"]:
        index = list(graph.node).index(prelu)
        count += _split_one(graph, initializers, prelu, index)
    return model, count


def global_pool(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite every ``ReduceMean`` over axes 2 and 3 of a 4-D tensor, dimensions kept, as ``GlobalAveragePool``.

    Only the attribute form of ``axes`` (opset 17 and before, what nnslim exports) is rewritten.

    Returns:
        A rewritten copy, and the number of nodes rewritten.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in (*graph.input, *onnx.shape_inference.infer_shapes(model).graph.value_info)
    }
    count = 0
    for index, node in enumerate(list(graph.node)):
        axes = _attribute(node, "axes", None)
        if node.op_type != "ReduceMean" or len(node.input) != 1 or _attribute(node, "keepdims", 1) != 1:
            continue
        rank = ranks.get(node.input[0])
        if rank != 4 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:  # type: ignore[attr-defined]
            continue
        pool = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        graph.node.remove(node)
        graph.node.insert(index, pool)
        count += 1
    return model, count
