"""The ``raw`` coder: a tensor's values as little-endian float32, float16 or int64 bytes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nnslim.bitstream.coders.base import FLOATS, UNPLACED, Alone, Coded, Coder, Settings, Tensor
from nnslim.bitstream.container import BitstreamError, Limits, TensorEntry, shorten

RAW_TYPES = {"float32": "<f4", "float16": "<f2", "int64": "<i8"}
"""Stored types (``stored`` of an entry) and their bytes."""
DECODED_TYPES = {"float32": FLOATS, "float16": FLOATS, "int64": ("int64",)}
"""Table dtypes that a tensor of each stored type may decode to."""


def stored(name: str, values: np.ndarray, kind: str) -> Alone:
    """A tensor as raw bytes of a stored type (``float32``, ``float16`` or ``int64``)."""
    dtype = "int64" if kind == "int64" else "float32"
    entry = TensorEntry(name, values.shape, dtype, "raw", UNPLACED, {"stored": kind})
    return Alone(entry, values.astype(RAW_TYPES[kind]).tobytes())


def _encode(tensor: Tensor, config: Settings) -> tuple[Coded, ...]:
    return (stored(tensor.name, tensor.values, config.raw_dtype),)


def _check(entry: TensorEntry, table: Mapping[str, TensorEntry]) -> None:
    kind = entry.params.get("stored")
    if not isinstance(kind, str) or kind not in RAW_TYPES or entry.dtype not in DECODED_TYPES[kind]:
        raise BitstreamError(f"tensor {entry.name!r}: raw {entry.dtype} tensor stored as {shorten(repr(kind))}")


def _width(entry: TensorEntry) -> int:
    return np.dtype(RAW_TYPES[entry.params["stored"]]).itemsize


def _payload_bytes(entries: Sequence[TensorEntry]) -> tuple[int, int]:
    exact = entries[0].elements * _width(entries[0])
    return exact, exact


def _decode(payload: bytes, entries: Sequence[TensorEntry], limits: Limits) -> dict[str, np.ndarray]:
    return {entry.name: np.frombuffer(payload, dtype=RAW_TYPES[entry.params["stored"]]) for entry in entries}


def _estimate_bits(entry: TensorEntry, values: np.ndarray) -> float:
    return 8.0 * _width(entry) * entry.elements


CODER = Coder(
    name="raw",
    encode=_encode,
    check=_check,
    payload_bytes=_payload_bytes,
    decode=_decode,
    estimate_bits=_estimate_bits,
)
