"""What a coder is: the operations that packing and unpacking need from one way of coding tensors.

A coder turns a tensor into table entries and payloads (``encode``), and a payload back into
arrays (``decode``). Before anything is decoded it checks an entry's parameters against the
tensor table (``check``) and bounds the bytes a chunk of its tensors may hold
(``payload_bytes``). A coder whose tensors share one chunk (NNR: one bitstream for all of
them) leaves their payloads to ``join``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nnslim.bitstream.container import BitstreamError, Limits, TensorEntry

FLOATS = ("float32", "float16")
"""Table dtypes of the tensors that a coder of floats decodes."""
UNPLACED = -1
"""The chunk of an entry before the file is assembled."""


class Settings(Protocol):
    """The coding settings a coder reads (``pack.PackConfig`` holds them, with their meanings)."""

    @property
    def nnr_qp(self) -> int: ...
    @property
    def nonweight_qp(self) -> int: ...
    @property
    def dependent(self) -> bool: ...
    @property
    def lossless(self) -> bool: ...
    @property
    def bits(self) -> int: ...
    @property
    def index_bits(self) -> int: ...
    @property
    def raw_dtype(self) -> str: ...


@dataclass(frozen=True)
class Tensor:
    """A float32 tensor of the model to code.

    Attributes:
        name: State-dict key.
        values: Its values.
        weight: Whether it is a Conv2d or Linear weight (one that pruning and weight sharing touch).
    """

    name: str
    values: np.ndarray
    weight: bool


@dataclass(frozen=True)
class Alone:
    """A tensor coded in a chunk of its own.

    Attributes:
        entry: Its table entry (the chunk ``UNPLACED`` until the file is assembled).
        payload: The chunk.
    """

    entry: TensorEntry
    payload: bytes


@dataclass(frozen=True)
class Joined:
    """A tensor that its coder's ``join`` codes in one chunk with the coder's other tensors.

    Attributes:
        entry: Its table entry (the chunk ``UNPLACED`` until the file is assembled).
        values: What ``join`` codes of it.
    """

    entry: TensorEntry
    values: np.ndarray


Coded = Alone | Joined
"""What a coder makes of a tensor."""


def entropy_bits(symbols: np.ndarray) -> float:
    """Zeroth-order empirical entropy of the symbols, in bits for all of them."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return max(0.0, float(-(counts * np.log2(p)).sum()))


def check_floats(entry: TensorEntry) -> None:
    """Refuse an entry of a coder of floats whose table dtype is no float.

    Raises:
        BitstreamError: Another dtype.
    """
    if entry.dtype not in FLOATS:
        raise BitstreamError(f"tensor {entry.name!r}: {entry.coder} decodes to floats, not {entry.dtype}")


def shared(values: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """A weight-shared tensor as indices and codebook, or ``None`` when it has more than ``limit`` values.

    Returns:
        int32 indices (0 for zero, 1 + codebook index otherwise) and the float32 codebook of
        its distinct non-zero values.
    """
    codebook = np.unique(values[values != 0])
    if len(codebook) > limit:
        return None
    indices = np.where(values != 0, np.searchsorted(codebook, values) + 1, 0).astype(np.int32)
    return indices, codebook.astype(np.float32)


def _own(entry: TensorEntry, decoded: Mapping[str, np.ndarray]) -> np.ndarray:
    return decoded[entry.name]


def _zeroth_order(entry: TensorEntry, values: np.ndarray) -> float:
    return entropy_bits(values)


def _no_details(entry: TensorEntry) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Coder:
    """One way of coding tensors, by the operations ``pack``, ``decode_tensors`` and ``summary`` use.

    Attributes:
        name: Its name in a file's tensor table and in ``PackConfig``.
        encode: A tensor's entries and payloads (several for a side tensor, such as a codebook).
        check: Refuses an entry whose dtype or parameters the coder does not take, given the
            whole table by name; it runs before anything is decoded.
        payload_bytes: Fewest and most bytes a chunk holding these entries may have.
        decode: The arrays of one chunk, by tensor name, given the entries it holds and the limits.
        join: Codes the ``Joined`` tensors of a file into one chunk (after the chunks of single
            tensors), by name; ``None`` for a coder of one tensor per chunk.
        resolve: A tensor's final values from every decoded array (a side tensor applied).
        estimate_bits: Entropy estimate of a decoded tensor, in bits.
        details: Further figures of an entry for ``summary``.
    """

    name: str
    encode: Callable[[Tensor, Settings], tuple[Coded, ...]]
    check: Callable[[TensorEntry, Mapping[str, TensorEntry]], None]
    payload_bytes: Callable[[Sequence[TensorEntry]], tuple[int, int]]
    decode: Callable[[bytes, Sequence[TensorEntry], Limits], dict[str, np.ndarray]]
    join: Callable[[dict[str, np.ndarray], Settings], bytes] | None = None
    resolve: Callable[[TensorEntry, Mapping[str, np.ndarray]], np.ndarray] = _own
    estimate_bits: Callable[[TensorEntry, np.ndarray], float] = _zeroth_order
    details: Callable[[TensorEntry], dict[str, Any]] = _no_details
