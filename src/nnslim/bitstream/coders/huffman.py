"""The ``huffman`` coder: Deep Compression's weight sharing and Huffman coding of Conv2d and Linear weights.

Each weight is shared by k-means to 2**``bits`` values unless it already has that few, then
coded by ``bitstream.huffman``; the other tensors (biases, PReLU slopes) stay raw float32, as in
the paper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nnslim.bitstream import huffman
from nnslim.bitstream.coders import raw
from nnslim.bitstream.coders.base import UNPLACED, Alone, Coded, Coder, Settings, Tensor, check_floats, shared
from nnslim.bitstream.container import BitstreamError, Limits, TensorEntry
from nnslim.compress.quantize import kmeans


def kmeans_shared(values: np.ndarray, bits: int) -> np.ndarray:
    """Deep Compression's weight sharing: non-zero values to 2**bits k-means centroids (zeros stay)."""
    if shared(values, 1 << bits) is not None:
        return values
    centroids, indices = kmeans(torch.from_numpy(values), 1 << bits)
    sharing = torch.cat([centroids.new_zeros(1), centroids])[indices + 1]
    return sharing.numpy().astype(np.float32)


def _encode(tensor: Tensor, config: Settings) -> tuple[Coded, ...]:
    if not tensor.weight:
        return (raw.stored(tensor.name, tensor.values, "float32"),)
    sharing = kmeans_shared(tensor.values, config.bits)
    clusters = len(np.unique(sharing[sharing != 0]))
    params: dict[str, Any] = {"index_bits": config.index_bits, "clusters": clusters}
    entry = TensorEntry(tensor.name, tensor.values.shape, "float32", "huffman", UNPLACED, params)
    return (Alone(entry, huffman.encode(sharing, config.index_bits)),)


def _check(entry: TensorEntry, table: Mapping[str, TensorEntry]) -> None:
    check_floats(entry)
    index_bits, clusters = entry.params.get("index_bits"), entry.params.get("clusters")
    if not isinstance(index_bits, int) or not isinstance(clusters, int) or bool in (type(index_bits), type(clusters)):
        raise BitstreamError(f"tensor {entry.name!r}: huffman needs integer index_bits and clusters")
    if not (1 <= index_bits <= 16 and 0 <= clusters <= huffman.MAX_CLUSTERS):
        raise BitstreamError(
            f"tensor {entry.name!r}: index_bits {index_bits} (1 to 16) or clusters {clusters} "
            f"(0 to {huffman.MAX_CLUSTERS}) out of range"
        )


def _payload_bytes(entries: Sequence[TensorEntry]) -> tuple[int, int]:
    return 0, huffman.max_payload_bytes(entries[0].elements)


def _decode(payload: bytes, entries: Sequence[TensorEntry], limits: Limits) -> dict[str, np.ndarray]:
    return {entry.name: huffman.decode(payload, entry.elements) for entry in entries}


def _details(entry: TensorEntry) -> dict[str, Any]:
    return {"compression_rate": huffman.compression_rate(entry.elements, entry.params["clusters"])}


CODER = Coder(
    name="huffman",
    encode=_encode,
    check=_check,
    payload_bytes=_payload_bytes,
    decode=_decode,
    details=_details,
)
