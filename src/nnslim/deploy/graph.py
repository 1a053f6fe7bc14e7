"""The float ONNX graph that is quantized: export, ONNX Runtime's pre-processing, and which nodes can be int8."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from nnslim.deploy.rewrite import global_pool, split_prelu
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import INPUT, export_onnx

INT8_OPS = frozenset(QLinearOpsRegistry) | frozenset(QDQRegistry)
"""Operator types ONNX Runtime's quantizer makes int8: those ``quantize_static`` quantizes by default."""

FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)
SHOWN = 2
"""Node names shown per operator type in a message."""


def pre_process(exported: Path, prepared: Path, what: str) -> Path:
    """ONNX Runtime's pre-processing for quantization of an exported model, written to ``prepared``.

    Symbolic shape inference is skipped (see ``prepare``).

    Raises:
        NnslimError: The pre-processing fails (``what`` names the model in the message).
    """
    try:
        quant_pre_process(str(exported), str(prepared), skip_symbolic_shape=True)
    except Exception as exc:  # onnxruntime's errors share no base class below Exception
        raise NnslimError(f"ONNX Runtime cannot prepare {what} for quantization: {exc}") from None
    return prepared


def prepare(model: nn.Module, folder: Path) -> Path:
    """Export a filter to ONNX, run ONNX Runtime's pre-processing for quantization on it, and rewrite it for int8.

    The pre-processing folds constants, fuses what ONNX Runtime fuses and infers shapes. Its
    symbolic shape inference is skipped: it gives up on the in-loop filter's PixelUnshuffle
    (a 6-D reshape with dynamic height and width), and ONNX's own shape inference is enough here.
    Then ``rewrite.split_prelu`` and ``rewrite.global_pool`` turn PReLUs and spatial means into
    operations with int8 kernels; both are exact, so the float model computes the same.

    Args:
        model: The filter.
        folder: Where ``float.onnx`` and ``prepared.onnx`` are written.

    Returns:
        The pre-processed model's path.

    Raises:
        NnslimError: The model does not export, or the pre-processing fails.
    """
    prepared = pre_process(export_onnx(model, folder / "float.onnx"), folder / "prepared.onnx", type(model).__name__)
    rewritten, _ = split_prelu(onnx.load(prepared))
    rewritten, _ = global_pool(rewritten)
    del rewritten.graph.value_info[:]  # shapes changed; inferred again from the rewritten graph
    onnx.save(onnx.shape_inference.infer_shapes(rewritten), prepared)
    return prepared


def image_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes that compute floating-point tensors from the ``luma`` input, in graph order.

    Shape arithmetic (``Shape`` and what follows it, on integers) and the QP's own path (a
    constant plane made from the ``qp`` input) are not among them.
    """
    graph = onnx.shape_inference.infer_shapes(model).graph
    floats = {
        v.name for v in (*graph.input, *graph.value_info, *graph.output) if v.type.tensor_type.elem_type in FLOAT_TYPES
    }
    reached = {INPUT}
    found = []
    for node in graph.node:  # ONNX keeps nodes in topological order
        outputs = [name for name in node.output if name in floats]
        if outputs and reached.intersection(node.input):
            reached.update(outputs)
            found.append(node)
    return found


def unsupported_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The image nodes whose operator ONNX Runtime's quantizer cannot make int8 (not in ``INT8_OPS``)."""
    return [node for node in image_nodes(model) if node.op_type not in INT8_OPS]


def describe(nodes: Sequence[onnx.NodeProto]) -> str:
    """Nodes by operator type for a one-line message: ``PRelu (/a/PRelu, /b/PRelu and 6 more), DepthToSpace (/up)``."""
    by_type: dict[str, list[str]] = {}
    for node in nodes:
        by_type.setdefault(node.op_type, []).append(node.name)
    parts = []
    for op_type, names in by_type.items():
        shown = ", ".join(names[:SHOWN])
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        parts.append(f"{op_type} ({shown}{more})")
    return ", ".join(parts)
