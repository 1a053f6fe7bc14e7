"""MPEG-NNR (ISO/IEC 15938-17) coding through the core of Fraunhofer's NNCodec.

Only ``nncodec.nnc_core`` is used (its approximator quantizes, its coder writes NNR units with
DeepCABAC); ``nncodec.nnc`` would import NNCodec's dataset framework. The payload is one plain
NNR bitstream holding every tensor given, with its name and shape, so NNCodec's own decoder
reads it with no side information.

- float32 tensors are quantized by NNR's uniform reconstruction quantizer, or by its dependent
  (trellis-coded) quantizer, with step ``step_size(qp)``; weights (two or more dimensions) take
  ``qp``, the others (biases, PReLU slopes) take ``nonweight_qp``.
- int32 tensors (codebook indices of shared weights) are coded losslessly as NNR integers.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from nnslim.bitstream.container import BitstreamError
from nnslim.errors import NnslimError

QP_DENSITY = 2
QP_RANGE = range(-(1 << (5 + QP_DENSITY)), 1 << (5 + QP_DENSITY))
"""QPs that an NNR unit can signal with ``qp_density`` 2 (6 + 2 bits, signed)."""
CABAC_UNARY_LENGTH_MINUS1 = 10


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


def decode(payload: bytes) -> dict[str, np.ndarray]:
    """Decode an NNR bitstream with NNCodec's decoder: float32 tensors dequantized, int32 ones as coded.

    Raises:
        BitstreamError: Anything NNCodec's decoder refuses (it checks with assertions and
            raises assorted exceptions on corrupt input).
    """
    core = _core()
    approximator, coder = core.approximator, core.coder
    model_info = _empty_model_info()
    try:
        decoded = coder.decode(bytearray(payload), model_info, hls_stats={})
        approximator.rec(decoded)
        parameters = approximator.recompose_params(model_info, decoded)["parameters"]
    except Exception as exc:  # NNCodec raises AssertionError, RuntimeError, IndexError, ValueError ...
        raise BitstreamError(f"nnr: NNCodec cannot decode the payload ({type(exc).__name__}: {exc})") from None
    return {
        name: np.asarray(value, dtype=np.int32 if np.issubdtype(np.asarray(value).dtype, np.integer) else np.float32)
        for name, value in parameters.items()
    }
