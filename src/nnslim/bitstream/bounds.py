"""The architecture a `.nnsl` file describes, checked against ``Limits`` before anything is built.

A file's description names an architecture (a built-in one with its arguments, or a user factory)
and a layer table (the layers that compression reshaped). Building even a memoryless skeleton
costs time in proportion to its layers, and a runnable model memory in proportion to its
parameters, so both are counted here from the description's numbers alone: the built-in
architectures by formula, and each layer-table entry from its fields, every field a plain number
in range. A user factory cannot be counted before it is built; it is built only when trusted,
on the meta device, and counted there.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from typing import Any

from nnslim.bitstream.container import BitstreamError, Limits, shorten
from nnslim.models.filters import REGISTRY, ArchSpec

PADDINGS = ("same", "valid")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BitstreamError(f"{where} must be an integer from {low} to {high}, not {shorten(repr(value))}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BitstreamError(f"{where} must be true or false, not {shorten(repr(value))}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BitstreamError(f"{where} must be a number from {low} to {high}, not {shorten(repr(value))}")
    return float(value)


def _pair(value: Any, where: str, low: int, high: int) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2:
        return _int(value[0], where, low, high), _int(value[1], where, low, high)
    value = _int(value, where, low, high)
    return value, value


def _fields(spec: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing, unknown = required - set(spec), set(spec) - required - optional - {"type"}
    if missing or unknown:
        which = f"lacks {', '.join(sorted(missing))}" if missing else f"has unknown {', '.join(sorted(unknown))}"
        raise BitstreamError(f"{where} {shorten(which, 80)}")


def _defaults(name: str) -> dict[str, Any]:
    """A built-in architecture's arguments and their defaults, from its signature."""
    return {p.name: p.default for p in inspect.signature(REGISTRY[name]).parameters.values()}


def _arguments(name: str, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    defaults = _defaults(name)
    unknown = set(kwargs) - set(defaults)
    if unknown:
        raise BitstreamError(f"{where}: {name} has no argument {shorten(', '.join(sorted(unknown)))}")
    return defaults | kwargs


def _conv(inputs: int, outputs: int, kernel: int, bias: bool = True) -> int:
    return outputs * inputs * kernel + (outputs if bias else 0)


def _postfilter(kwargs: dict[str, Any], limits: Limits, where: str) -> tuple[int, int]:
    args = _arguments("postfilter", kwargs, where)
    channels = _int(args["channels"], f"{where} channels", 1, limits.max_channels)
    convs = max(2, _int(args["layers"], f"{where} layers", 1, limits.max_layers))
    planes = 2 if _bool(args["qp_input"], f"{where} qp_input") else 1
    middle = (convs - 2) * _conv(channels, channels, 9)
    return _conv(planes, channels, 9) + middle + _conv(channels, 1, 9), convs


def _vrcnn(kwargs: dict[str, Any], limits: Limits, where: str) -> tuple[int, int]:
    args = _arguments("vrcnn", kwargs, where)
    planes = 2 if _bool(args["qp_input"], f"{where} qp_input") else 1
    convs = ((planes, 64, 25), (64, 16, 25), (64, 32, 9), (48, 16, 9), (48, 32, 1), (48, 1, 9))
    return sum(_conv(*c) for c in convs), len(convs)


def _inloop(kwargs: dict[str, Any], limits: Limits, where: str) -> tuple[int, int]:
    args = _arguments("inloop", kwargs, where)
    channels = _int(args["channels"], f"{where} channels", 4, limits.max_channels)
    blocks = _int(args["blocks"], f"{where} blocks", 0, limits.max_layers)
    planes = 2 if _bool(args["qp_input"], f"{where} qp_input") else 1
    cells = 4 if _bool(args["shuffle"], f"{where} shuffle") else 1
    squeezed = channels // 4
    block = 2 * _conv(channels, channels, 9) + channels + _conv(channels, squeezed, 1) + _conv(squeezed, channels, 1)
    return _conv(planes * cells, channels, 9) + blocks * block + _conv(channels, cells, 9), 2 + 5 * blocks


ARCHITECTURES: dict[str, Callable[[dict[str, Any], Limits, str], tuple[int, int]]] = {
    "postfilter": _postfilter,
    "vrcnn": _vrcnn,
    "inloop": _inloop,
}
"""Per built-in architecture: (parameters, layers with parameters) its arguments build, arguments checked."""


def _conv2d(spec: dict[str, Any], limits: Limits, where: str) -> int:
    optional = {"stride", "padding", "dilation", "groups", "bias", "padding_mode"}
    _fields(spec, {"in_channels", "out_channels", "kernel_size"}, optional, where)
    inputs = _int(spec["in_channels"], f"{where} in_channels", 1, limits.max_channels)
    outputs = _int(spec["out_channels"], f"{where} out_channels", 1, limits.max_channels)
    height, width = _pair(spec["kernel_size"], f"{where} kernel_size", 1, limits.max_kernel)
    stride = _pair(spec.get("stride", 1), f"{where} stride", 1, limits.max_kernel)
    padding = spec.get("padding", 0)
    if padding not in PADDINGS:
        _pair(padding, f"{where} padding", 0, limits.max_kernel)
    elif padding == "same" and stride != (1, 1):
        raise BitstreamError(f"{where}: padding 'same' needs stride 1")
    _pair(spec.get("dilation", 1), f"{where} dilation", 1, limits.max_kernel)
    groups = _int(spec.get("groups", 1), f"{where} groups", 1, limits.max_channels)
    if inputs % groups or outputs % groups:
        raise BitstreamError(f"{where}: {groups} groups do not divide {inputs} inputs and {outputs} outputs")
    if spec.get("padding_mode", "zeros") not in PADDING_MODES:
        raise BitstreamError(f"{where} padding_mode must be one of {', '.join(PADDING_MODES)}")
    bias = _bool(spec.get("bias", True), f"{where} bias")
    return _conv(inputs // groups, outputs, height * width, bias)


def _separable(spec: dict[str, Any], limits: Limits, where: str) -> int:
    _fields(spec, {"in_channels", "rank", "out_channels", "kernel_size", "padding", "bias"}, set(), where)
    inputs = _int(spec["in_channels"], f"{where} in_channels", 1, limits.max_channels)
    rank = _int(spec["rank"], f"{where} rank", 1, limits.max_channels)
    outputs = _int(spec["out_channels"], f"{where} out_channels", 1, limits.max_channels)
    kernel = _int(spec["kernel_size"], f"{where} kernel_size", 1, limits.max_kernel)
    _int(spec["padding"], f"{where} padding", 0, limits.max_kernel)
    bias = _bool(spec["bias"], f"{where} bias")
    return _conv(inputs, rank, kernel, bias=False) + _conv(rank, outputs, kernel, bias)


def _linear(spec: dict[str, Any], limits: Limits, where: str) -> int:
    _fields(spec, {"in_features", "out_features"}, {"bias"}, where)
    inputs = _int(spec["in_features"], f"{where} in_features", 1, limits.max_channels)
    outputs = _int(spec["out_features"], f"{where} out_features", 1, limits.max_channels)
    return _conv(inputs, outputs, 1, _bool(spec.get("bias", True), f"{where} bias"))


def _batchnorm(spec: dict[str, Any], limits: Limits, where: str) -> int:
    _fields(spec, {"num_features"}, {"eps", "momentum", "affine", "track_running_stats"}, where)
    features = _int(spec["num_features"], f"{where} num_features", 1, limits.max_channels)
    _number(spec.get("eps", 1e-5), f"{where} eps", 0.0, 1.0)
    if spec.get("momentum") is not None:
        _number(spec["momentum"], f"{where} momentum", 0.0, 1.0)
    affine = _bool(spec.get("affine", True), f"{where} affine")
    tracked = _bool(spec.get("track_running_stats", True), f"{where} track_running_stats")
    return 2 * features * affine + (2 * features + 1) * tracked


def _prelu(spec: dict[str, Any], limits: Limits, where: str) -> int:
    _fields(spec, set(), {"num_parameters", "init"}, where)
    _number(spec.get("init", 0.25), f"{where} init", -1e6, 1e6)
    return _int(spec.get("num_parameters", 1), f"{where} num_parameters", 1, limits.max_channels)


LAYERS: dict[str, Callable[[dict[str, Any], Limits, str], int]] = {
    "Conv2d": _conv2d,
    "SeparableConv2d": _separable,
    "Linear": _linear,
    "BatchNorm2d": _batchnorm,
    "PReLU": _prelu,
}
"""Per layer type of a layer table: the parameters (and buffers) an entry's fields build, fields checked."""


def layer_table(table: Any, limits: Limits) -> int:
    """The parameters a layer table builds, every entry checked.

    Raises:
        BitstreamError: A malformed entry, a field out of range, or more layers or parameters than the limits.
    """
    if not isinstance(table, dict):
        raise BitstreamError("description: the layer table is not an object")
    if len(table) > limits.max_layers:
        raise BitstreamError(f"layer table: {len(table)} layers; the limit is {limits.max_layers}")
    total = 0
    for name, spec in table.items():
        where = f"layer {shorten(name)}"
        if not name or len(name) > limits.max_name_chars:
            raise BitstreamError(f"{where}: a name of 1 to {limits.max_name_chars} characters is needed")
        kind = spec.get("type") if isinstance(spec, dict) else None
        if not isinstance(kind, str) or kind not in LAYERS:
            raise BitstreamError(f"{where}: type must be one of {', '.join(LAYERS)}")
        total += LAYERS[kind](spec, limits, where)
    if total > limits.max_params:
        raise BitstreamError(f"layer table: {total} parameters; the limit is {limits.max_params} (see --max-params)")
    return total


def architecture(arch: Any, limits: Limits) -> ArchSpec:
    """The architecture a description names, its size checked when it is a built-in one.

    Raises:
        BitstreamError: A malformed architecture, arguments out of range, or more layers or
            parameters than the limits.
    """
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise BitstreamError("description: missing or malformed 'arch' (an object with a 'name')")
    name, kwargs = arch["name"], arch.get("kwargs", {})
    where = f"architecture {shorten(name)}"
    if len(name) > limits.max_name_chars:
        raise BitstreamError(f"{where}: name longer than the limit of {limits.max_name_chars}")
    if not isinstance(kwargs, dict):
        raise BitstreamError(f"{where}: arguments are not an object")
    if len(kwargs) > limits.max_kwargs or len(json.dumps(kwargs)) > limits.max_kwargs_bytes:
        raise BitstreamError(
            f"{where}: arguments over the limit of {limits.max_kwargs} or {limits.max_kwargs_bytes} bytes"
        )
    if name in REGISTRY:
        if name not in ARCHITECTURES:
            raise BitstreamError(f"{where}: nnslim cannot bound the size of this built-in architecture")
        parameters, layers = ARCHITECTURES[name](kwargs, limits, where)
        if layers > limits.max_layers:
            raise BitstreamError(f"{where}: {layers} layers; the limit is {limits.max_layers}")
        if parameters > limits.max_params:
            raise BitstreamError(
                f"{where}: {parameters} parameters; the limit is {limits.max_params} (see --max-params)"
            )
    return ArchSpec(name, dict(kwargs))


def description(model: Any, limits: Limits) -> tuple[ArchSpec, dict[str, dict[str, Any]]]:
    """The architecture and layer table of a file's description, checked without building anything.

    Raises:
        BitstreamError: See ``architecture`` and ``layer_table``.
    """
    if not isinstance(model, dict):
        raise BitstreamError("description: not an object")
    table = model.get("layers", {})
    spec = architecture(model.get("arch"), limits)
    layer_table(table, limits)
    return spec, table


def tensor_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """Elements of tensors of the given shapes, in all."""
    return sum(math.prod(shape) for shape in shapes.values())
