"""The ``nnr`` coder: every tensor it codes in one MPEG-NNR bitstream (``bitstream.nnr``), quantized at a QP.

Weights (two or more dimensions) take ``nnr_qp``, the other tensors ``nonweight_qp``. A table
entry of dtype int32 (no parameters) is an integer tensor that NNR codes exactly (the switch
flags of a content-adaptive update). With
``lossless``, a weight-shared tensor is coded exactly instead: int32 codebook indices in the
bitstream, and its codebook as a raw float32 side tensor named ``NAME#codebook``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnslim.bitstream import nnr
from nnslim.bitstream.coders import raw
from nnslim.bitstream.coders.base import (
    UNPLACED,
    Coded,
    Coder,
    Joined,
    Settings,
    Tensor,
    check_floats,
    entropy_bits,
    shared,
)
from nnslim.bitstream.container import BitstreamError, Limits, TensorEntry, shorten

SIDE = "#codebook"
"""Suffix of the name of a codebook side tensor."""
MAX_CODEBOOK = 1 << 16
"""Most distinct values of a tensor coded losslessly."""


def _encode(tensor: Tensor, config: Settings) -> tuple[Coded, ...]:
    name, values = tensor.name, tensor.values
    sharing = shared(values, MAX_CODEBOOK) if config.lossless else None
    if sharing is None:
        params: dict[str, Any] = {
            "qp": config.nnr_qp if values.ndim > 1 else config.nonweight_qp,
            "dependent": config.dependent,
        }
        return (Joined(TensorEntry(name, values.shape, "float32", "nnr", UNPLACED, params), values),)
    indices, codebook = sharing
    entry = TensorEntry(name, values.shape, "float32", "nnr", UNPLACED, {"codebook": name + SIDE})
    return raw.stored(name + SIDE, codebook, "float32"), Joined(entry, indices)


def _join(tensors: dict[str, np.ndarray], config: Settings) -> bytes:
    return nnr.encode(tensors, config.nnr_qp, config.nonweight_qp, config.dependent)


def _check(entry: TensorEntry, table: Mapping[str, TensorEntry]) -> None:
    if entry.dtype == "int32":
        if entry.params:
            raise BitstreamError(f"tensor {entry.name!r}: an nnr integer tensor (coded exactly) takes no parameters")
        return
    check_floats(entry)
    side, qp = entry.params.get("codebook"), entry.params.get("qp")
    if side is not None:
        if not isinstance(side, str) or side not in table or table[side].coder != "raw":
            raise BitstreamError(f"tensor {entry.name!r}: its codebook {shorten(repr(side))} is no raw tensor")
    elif isinstance(qp, bool) or not isinstance(qp, int) or qp not in nnr.QP_RANGE:
        raise BitstreamError(
            f"tensor {entry.name!r}: nnr qp must be an integer from {nnr.QP_RANGE.start} to {nnr.QP_RANGE.stop - 1}"
        )


def _payload_bytes(entries: Sequence[TensorEntry]) -> tuple[int, int]:
    return 0, nnr.max_payload_bytes({entry.name: entry.elements for entry in entries})


def _decode(payload: bytes, entries: Sequence[TensorEntry], limits: Limits) -> dict[str, np.ndarray]:
    return nnr.decode(payload, {entry.name: entry.elements for entry in entries}, limits)


def _resolve(entry: TensorEntry, decoded: Mapping[str, np.ndarray]) -> np.ndarray:
    side = entry.params.get("codebook")
    if side is None:
        return decoded[entry.name]
    indices, codebook = decoded[entry.name], decoded[side]
    if indices.dtype != np.int32 or indices.min(initial=0) < 0:
        raise BitstreamError(f"{entry.name}: bad codebook indices")
    if indices.max(initial=0) > codebook.size:
        raise BitstreamError(f"{entry.name}: codebook index beyond its {codebook.size} values")
    return np.concatenate([[0.0], codebook.ravel()]).astype(np.float32)[indices]


def _estimate_bits(entry: TensorEntry, values: np.ndarray) -> float:
    if entry.dtype == "int32" or entry.params.get("codebook") is not None:
        return entropy_bits(values)
    with np.errstate(invalid="ignore", over="ignore"):  # a hostile bitstream may decode to infinities
        return entropy_bits(np.rint(values / nnr.step_size(entry.params["qp"])).astype(np.int64))


CODER = Coder(
    name="nnr",
    encode=_encode,
    check=_check,
    payload_bytes=_payload_bytes,
    decode=_decode,
    join=_join,
    resolve=_resolve,
    estimate_bits=_estimate_bits,
)
