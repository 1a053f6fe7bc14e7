"""MPEG-NNR (ISO/IEC 15938-17) coding through the core of Fraunhofer's NNCodec.

Only ``nncodec.nnc_core`` is used (its approximator quantizes, its coder writes NNR units with
DeepCABAC); ``nncodec.nnc`` would import NNCodec's dataset framework. The payload is one plain
NNR bitstream holding every tensor given, with its name and shape, so NNCodec's own decoder
reads it with no side information.

- float32 tensors are quantized by NNR's uniform reconstruction quantizer, or by its dependent
  (trellis-coded) quantizer, with step ``step_size(qp)``; weights (two or more dimensions) take
  ``qp``, the others (biases, PReLU slopes) take ``nonweight_qp``.
- int32 tensors (codebook indices of shared weights) are coded losslessly as NNR integers.

``decode`` reads only the NNR units this encoder writes (a start unit, a model parameter set, a
topology unit, and one compressed data unit per tensor, with no codebooks, splits or entry
points): their headers are checked here, with every tensor's dimensions against the limits and the
caller's table, before NNCodec's decoder allocates or decodes anything.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nnslim.bitstream.container import DEFAULT_LIMITS, BitstreamError, Limits, shorten
from nnslim.errors import NnslimError

QP_DENSITY = 2
QP_RANGE = range(-(1 << (5 + QP_DENSITY)), 1 << (5 + QP_DENSITY))
"""QPs that an NNR unit can signal with ``qp_density`` 2 (6 + 2 bits, signed)."""
CABAC_UNARY_LENGTH_MINUS1 = 10
MAX_BYTES_PER_VALUE = 16
"""Most bytes of coded data a value may take in a compressed data unit (DeepCABAC needs well under 8)."""
_STR, _MPS, _TPL, _NDU = 0, 1, 3, 5  # NNR unit types
_PT_INT, _PT_FLOAT = 0, 1  # payload types of a compressed data unit
_MAX_PREFIX = 32  # longest exp-Golomb prefix of a header field
_MAX_UNIT_HEADER = 256  # generous bytes of a unit's header fields, a tensor name aside
_NEXT = {None: (_STR,), _STR: (_MPS,), _MPS: (_TPL, _NDU), _TPL: (_NDU,), _NDU: (_NDU,)}


def step_size(qp: int, qp_density: int = QP_DENSITY) -> float:
    """NNR's quantization step: (k + qp mod k) * 2**(floor(qp / k) - qp_density), k = 2**qp_density.

    Each +k in QP doubles the step (k = 4 here).
    """
    k = 1 << qp_density
    return float((k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density))


def _encoder_info() -> dict[str, Any]:
    """The NNR settings of a plain, non-incremental bitstream (as ``nncodec.nnc.compress`` uses)."""
    return {
        "cabac_unary_length_minus1": CABAC_UNARY_LENGTH_MINUS1,
        "param_opt_flag": True,
        "partial_data_counter": 0,
        "general_profile_idc": 1,
        "node_id_present_flag": 1,
        "device_id": 0,
        "mps_parent_signalling_enabled_flag": 0,
        "parent_node_id_present_flag": 0,
        "temporal_context_modeling_flag": 0,
        "row_skip_enabled_flag": 0,
        "pre_signalling": 0,
    }


def _core() -> Any:
    """NNCodec's coding core, imported on first use (it is installed apart: see the README)."""
    try:
        from nncodec import nnc_core
    except ImportError:
        raise NnslimError("the nnr coder needs NNCodec: pip install --no-deps nncodec==2.1.3") from None
    return nnc_core


def encode(tensors: dict[str, np.ndarray], qp: int, nonweight_qp: int, dependent: bool = False) -> bytes:
    """Code tensors into one NNR bitstream.

    Args:
        tensors: float32 tensors to quantize and int32 tensors to code exactly, by name.
        qp: QP of weights (tensors of two or more dimensions).
        nonweight_qp: QP of the other float tensors.
        dependent: Use dependent (trellis-coded) quantization instead of uniform.

    Returns:
        The NNR bitstream.

    Raises:
        NnslimError: A QP out of range, another dtype, or values too large for the QP (NNCodec
            would raise the QP on its own; that is refused rather than done silently).
    """
    core = _core()
    approximator, coder, nnr_model = core.approximator, core.coder, core.nnr_model
    for name, value in (("qp", qp), ("nonweight_qp", nonweight_qp)):
        if value not in QP_RANGE:
            raise NnslimError(f"nnr: {name} must be in {QP_RANGE.start}..{QP_RANGE.stop - 1}, not {value}")
    arrays = {}
    for name, tensor in tensors.items():
        if tensor.dtype not in (np.float32, np.int32):
            raise NnslimError(f"nnr: {name} is {tensor.dtype}; NNR codes float32 and int32 tensors")
        arrays[name] = np.ascontiguousarray(tensor)
    model_info = nnr_model.NNRModel(arrays).model_info
    approx_data = approximator.init_approx_data(arrays, model_info, qp_density=QP_DENSITY, scan_order=0)
    approx_info = approximator.ApproxInfo(
        approx_data,
        model_info,
        "uniform",
        0,
        qp,
        False,
        not dependent,
        CABAC_UNARY_LENGTH_MINUS1,
        0.0,
        nonweight_qp=nonweight_qp,
    ).approx_info
    info = _encoder_info()
    with contextlib.redirect_stdout(io.StringIO()):  # the approximator prints INFO lines
        quantized = approximator.approx(approx_info, model_info, approx_data, info)
        bitstream, _ = coder.encode(enc_info=info, model_info=model_info, approx_data=quantized)
    for name, used in quantized["qp"].items():
        wanted = qp if arrays[name].ndim > 1 else nonweight_qp
        if arrays[name].dtype == np.float32 and int(used) != wanted:
            raise NnslimError(f"nnr: values of {name} are too large for QP {wanted}; NNCodec needs QP {int(used)}")
    return bytes(bitstream)


@functools.cache
def header() -> bytes:
    """The start unit, model parameter set and topology unit that begin every bitstream ``encode`` writes.

    They depend on no tensor and no QP (the QPs are in each compressed data unit): they carry no
    information, so a decoder that knows this coder rebuilds them, and a codec need carry only
    the data units after them.
    """
    payload = encode({"header": np.zeros(1, np.int32)}, 0, 0)
    position = 0
    for _ in (_STR, _MPS, _TPL):
        position += _unit_size(payload, position)[0]
    return payload[:position]


def data_bytes(payload: bytes) -> int:
    """Bytes of the compressed data units of a bitstream ``encode`` wrote: all but its ``header``.

    Raises:
        BitstreamError: A bitstream that does not begin with that header.
    """
    if not payload.startswith(header()):
        raise BitstreamError("nnr: a bitstream whose header units differ from those this coder writes")
    return len(payload) - len(header())


def _empty_model_info() -> dict[str, Any]:
    flags = ("sparsification_flag", "pruning_flag", "unification_flag", "decomposition_performance_map_flag")
    return {
        "parameter_type": {},
        "parameter_dimensions": {},
        "parameter_index": {},
        "block_identifier": {},
        "topology_storage_format": None,
        "topology_compression_format": None,
        "performance_maps": {"mps": {}, "lps": {}},
        "performance_map_flags": {f"{side}_{flag}": {} for side in ("mps", "lps") for flag in flags},
    }


def max_payload_bytes(tensors: Mapping[str, int]) -> int:
    """Most bytes a bitstream of these tensors (element counts by name) takes: unit headers and coded values."""
    units = sum(_MAX_UNIT_HEADER + 4 * len(name) + MAX_BYTES_PER_VALUE * (n + 1) for name, n in tensors.items())
    return 3 * _MAX_UNIT_HEADER + units


class _Bits:
    """The bits of one NNR unit, read as NNCodec's ``hls.BitReader`` reads them, never past the unit's end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.bit = 0

    @property
    def bytes_touched(self) -> int:
        return -(-self.bit // 8)

    def u(self, n: int) -> int:
        end = self.bit + n
        if end > 8 * len(self._data):
            raise BitstreamError("nnr: a unit header runs past the end of its unit")
        window = int.from_bytes(self._data[self.bit // 8 : -(-end // 8)], "big")
        self.bit = end
        return (window >> (-end % 8)) & ((1 << n) - 1)

    def ue(self, k: int) -> int:
        value = 0
        for _ in range(_MAX_PREFIX):
            if self.u(1):
                return value + (self.u(k) if k else 0)
            value += 1 << k
            k += 1
        raise BitstreamError("nnr: a header value longer than any this coder writes")

    def i(self, n: int) -> int:
        value = self.u(n)
        return value - (1 << n) if value >> (n - 1) else value

    def string(self, limit: int) -> str:
        if self.bit % 8:
            raise BitstreamError("nnr: a misaligned name")
        start = self.bit // 8
        end = self._data.find(b"\0", start, start + limit + 1)
        if end < 0:
            raise BitstreamError(f"nnr: a tensor name without its end within the limit of {limit} bytes")
        try:
            text = self._data[start:end].decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError("nnr: a tensor name that is not UTF-8") from None
        self.bit = 8 * (end + 1)
        return text

    def align(self) -> None:
        self.u(1)
        self.bit = 8 * self.bytes_touched


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise BitstreamError(f"nnr: {what}, which this coder never writes")


def _mps(bits: _Bits) -> None:
    """The model parameter set's payload: no performance maps, references, or parent signalling."""
    bits.u(1)  # topology_carriage_flag
    _require(bits.u(4) == 0, "performance maps")
    quantization = bits.u(3)
    _require(bits.u(1) == 0, "indexed topology references")
    _require(bits.u(3) == 0, "a base model or validation performance")
    _require(bits.u(1) == 0, "parent signalling")
    bits.u(3)  # reserved
    if quantization & 3:
        bits.u(3)  # qp density
        bits.i(13)  # quantization parameter
    bits.align()


def _ndu(bits: _Bits, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """A compressed data unit's header, up to its coded data: the tensor's name and dimensions."""
    payload_type = bits.u(5)
    _require(payload_type in (_PT_INT, _PT_FLOAT), f"payload type {payload_type}")
    _require(bits.u(1) == 0, "a split tensor")
    data_format = bits.u(1)
    _require(bits.u(1) == 1, "a tensor without its parameters")
    name = bits.string(4 * limits.max_name_chars)
    if bits.u(1):  # node_id_present_flag
        bits.ue(1), bits.ue(5), bits.ue(4)  # device_id, parameter_id, put_node_depth
    if payload_type == _PT_FLOAT:
        _require(bits.u(1) == 0, "a codebook")
    bits.u(1)  # dq_flag
    if data_format:
        bits.u(7)
    _require(bits.u(1) == 1, "dimensions left out")
    unary_length = bits.u(1)
    _require(bits.u(4) == 0, "decomposed, batch-norm or fused parameters")
    count = bits.ue(1)
    if not 1 <= count <= limits.max_dims:
        raise BitstreamError(f"nnr: tensor {shorten(name)} has {count} dimensions; the limit is {limits.max_dims}")
    dims = tuple(bits.ue(7) for _ in range(count))
    if any(d > limits.max_params for d in dims) or math.prod(dims) > limits.max_params:
        raise BitstreamError(
            f"nnr: tensor {shorten(name)} of shape {list(dims)} is over the limit of {limits.max_params} parameters"
        )
    if unary_length:
        bits.u(8)
    if count > 1:
        bits.ue(1)  # first_tensor_dimension_shift
        _require(bits.u(4) == 0, "a scan order with entry points")
    bits.align()
    return name, dims


def _unit_size(payload: bytes, position: int) -> tuple[int, int]:
    """The size in bytes of the NNR unit at ``position``, checked to fit the payload, and the bits of its size field.

    Raises:
        BitstreamError: A size shorter than its own field or past the payload's end.
    """
    head = _Bits(payload[position : position + 4])
    size = head.u(31) if head.u(1) else head.u(15)
    if not head.bytes_touched < size <= len(payload) - position:
        raise BitstreamError(f"nnr: a unit of {size} bytes at byte {position} of {len(payload)}")
    return size, head.bit


def scan(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, tuple[int, ...]]:
    """The tensors of an NNR bitstream and their dimensions, from its unit headers alone.

    Raises:
        BitstreamError: Units out of order or of another kind than this coder writes, sizes that do
            not add up, a tensor named twice, or dimensions over the limits.
    """
    tensors: dict[str, tuple[int, ...]] = {}
    position, previous = 0, None
    while position < len(payload):
        size, field = _unit_size(payload, position)
        bits = _Bits(payload[position : position + size])
        bits.bit = field
        kind = bits.u(6)
        _require(kind in _NEXT[previous], f"unit type {kind} after unit type {previous}")
        bits.u(1)  # independently_decodable_flag
        _require(bits.u(1) == 0, "a partial data counter")
        if kind == _STR:
            _require(bits.u(8) == 1, "a profile other than 1")
        elif kind == _MPS:
            _mps(bits)
        elif kind == _TPL:
            _require(bits.u(16) == 0, "a stored topology")
            bits.string(0)
        else:
            name, dims = _ndu(bits, limits)
            if name in tensors:
                raise BitstreamError(f"nnr: tensor {shorten(name)} is coded twice")
            if size - bits.bytes_touched > MAX_BYTES_PER_VALUE * (math.prod(dims) + 1):
                raise BitstreamError(f"nnr: tensor {shorten(name)} has more coded bytes than its values can take")
            tensors[name] = dims
        if size != bits.bytes_touched and kind != _NDU:
            raise BitstreamError(f"nnr: a unit of {size} bytes holds {bits.bytes_touched}")
        position, previous = position + size, kind
    _require(previous in (_MPS, _TPL, _NDU), "a bitstream without a start unit and a parameter set")
    return tensors


def decode(
    payload: bytes, expected: Mapping[str, int] | None = None, limits: Limits = DEFAULT_LIMITS
) -> dict[str, np.ndarray]:
    """Decode an NNR bitstream with NNCodec's decoder: float32 tensors dequantized, int32 ones as coded.

    Args:
        payload: The bitstream.
        expected: Element count of every tensor it must hold, by name (any tensors when None).
        limits: What the bitstream may declare.

    Raises:
        BitstreamError: Units this coder does not write, tensors other than ``expected`` or over
            the limits (checked before decoding), or anything NNCodec's decoder refuses (it checks
            with assertions and raises assorted exceptions on corrupt input).
    """
    tensors = scan(payload, limits)
    counts = {name: math.prod(dims) for name, dims in tensors.items()}
    if sum(counts.values()) > limits.max_params:
        raise BitstreamError(f"nnr: more than the limit of {limits.max_params} parameters in all")
    if expected is not None and counts != dict(expected):
        wrong = sorted(set(counts.items()) ^ set(expected.items()))[0][0]
        raise BitstreamError(f"nnr: the bitstream does not fit the tensor table (first difference: {shorten(wrong)})")
    core = _core()
    approximator, coder = core.approximator, core.coder
    model_info = _empty_model_info()
    try:
        decoded = coder.decode(bytearray(payload), model_info, hls_stats={})
        approximator.rec(decoded)
        parameters = approximator.recompose_params(model_info, decoded)["parameters"]
    except MemoryError:
        raise  # the checks above bound what the decoder allocates: this is a bug, not a corrupt file
    except Exception as exc:  # NNCodec raises AssertionError, RuntimeError, IndexError, ValueError ...
        reason = shorten(" ".join(str(exc).split()), 200)
        raise BitstreamError(f"nnr: NNCodec cannot decode the payload ({type(exc).__name__}: {reason})") from None
    out = {
        name: np.asarray(value, dtype=np.int32 if np.issubdtype(np.asarray(value).dtype, np.integer) else np.float32)
        for name, value in parameters.items()
    }
    if {name: value.shape for name, value in out.items()} != tensors:
        raise BitstreamError("nnr: NNCodec decoded other tensors than the unit headers declare")
    return out
