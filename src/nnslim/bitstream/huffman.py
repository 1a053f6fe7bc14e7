"""Deep Compression's lossless coding of a pruned, weight-shared tensor (Han et al. 2016; seed 001).

A tensor whose non-zero values come from a codebook of k centroids is stored as two streams:

- relative indices: for each stored entry, the number of zeros since the previous one, in
  ``index_bits`` bits; a gap longer than 2**index_bits - 1 is bridged by a filler entry holding a
  zero, as in the paper;
- codebook indices: 0 for a filler zero, 1..k for the centroids.

Both streams are Huffman coded (canonical codes, at most ``MAX_CODE_BITS`` bits per code). The
payload carries the codebook as float32 and both code-length tables, so it decodes on its own.
The coding is exact: it codes the values it is given, so a tensor must already be weight-shared
(``quantize.share_weights``); ``encode`` refuses one with more than 2**16 distinct values.
"""

from __future__ import annotations

import heapq
import math
import struct

import numpy as np

from nnslim.bitstream.container import BitstreamError
from nnslim.errors import NnslimError

MAX_CODE_BITS = 16
MAX_CLUSTERS = 1 << 16
_HEAD = struct.Struct("<BIII")  # index bits, entries, clusters, gap stream bytes
_BLOCK_BYTES = 8192  # stream bytes decoded per lookup block


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code lengths for symbol counts, at most ``MAX_CODE_BITS`` each (0 for unused symbols).

    Deterministic: ties are broken by symbol order. When a code would be longer than the limit,
    the counts are flattened (halved, keeping every used symbol at 1 or more) and the code rebuilt.
    """
    counts = np.asarray(counts, dtype=np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), dtype=np.int64)
    if len(used) <= 1:
        lengths[used] = 1
        return lengths
    weights = counts[used].copy()
    while True:
        heap: list[tuple[int, int, list[int]]] = [(int(w), i, [i]) for i, w in enumerate(weights)]
        heapq.heapify(heap)
        depth = np.zeros(len(used), dtype=np.int64)
        order = len(heap)
        while len(heap) > 1:
            w1, _, members1 = heapq.heappop(heap)
            w2, _, members2 = heapq.heappop(heap)
            depth[members1 + members2] += 1
            heapq.heappush(heap, (w1 + w2, order, members1 + members2))
            order += 1
        if depth.max() <= MAX_CODE_BITS:
            lengths[used] = depth
            return lengths
        weights = np.maximum(weights // 2, 1)


def _canonical(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes for code lengths: shorter codes first, then by symbol."""
    codes = np.zeros(len(lengths), dtype=np.int64)
    code, previous = 0, 0
    for symbol in sorted(np.flatnonzero(lengths), key=lambda s: (lengths[s], s)):
        code <<= int(lengths[symbol]) - previous
        codes[symbol] = code
        code += 1
        previous = int(lengths[symbol])
    return codes


def _encode_symbols(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    codes = _canonical(lengths)
    text = "".join(format(int(c), f"0{int(n)}b") for c, n in zip(codes[symbols], lengths[symbols], strict=True))
    text += "0" * (-len(text) % 8)
    return int(text, 2).to_bytes(len(text) // 8, "big") if text else b""


def _lookup(lengths: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symbol and code length of every ``MAX_CODE_BITS``-bit window (symbol -1: no code starts so)."""
    table_symbol = np.full(1 << MAX_CODE_BITS, -1, dtype=np.int64)
    table_length = np.zeros(1 << MAX_CODE_BITS, dtype=np.int64)
    for symbol, code in zip(used, _canonical(lengths)[used], strict=True):
        shift = MAX_CODE_BITS - int(lengths[symbol])
        table_symbol[code << shift : (code + 1) << shift] = symbol
        table_length[code << shift : (code + 1) << shift] = lengths[symbol]
    return table_symbol, table_length


def _decode_symbols(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols with a lookup table of ``MAX_CODE_BITS``-bit windows, one block of bits at a time.

    Every code has one to ``MAX_CODE_BITS`` bits, so the stream's length is checked against
    ``count`` before any work, and memory stays that of one block however long the stream.
    """
    used = np.flatnonzero(lengths)
    if count and (len(used) == 0 or lengths.max() > MAX_CODE_BITS):
        raise BitstreamError("huffman: bad code-length table")
    if sum(2.0 ** -int(lengths[s]) for s in used) > 1.0 + 1e-12:
        raise BitstreamError("huffman: code lengths do not form a prefix code")
    shortest, longest = (int(lengths[used].min()), int(lengths[used].max())) if count else (0, 0)
    if not -(-count * shortest // 8) <= len(data) <= -(-count * longest // 8):
        raise BitstreamError(f"huffman: {len(data)} bytes cannot hold {count} codes of {shortest} to {longest} bits")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    table_symbol, table_length = _lookup(lengths, used)
    weights = 1 << np.arange(MAX_CODE_BITS)[::-1]
    stream_bits = 8 * len(data)
    out = np.empty(count, dtype=np.int64)
    done = position = 0
    while done < count:
        if position >= stream_bits:
            raise BitstreamError("huffman: the stream ends early")
        first = position // 8
        block = np.unpackbits(np.frombuffer(data[first : first + _BLOCK_BYTES + 2], dtype=np.uint8))
        block = np.concatenate([block, np.zeros(MAX_CODE_BITS, np.uint8)])
        windows = np.lib.stride_tricks.sliding_window_view(block, MAX_CODE_BITS)[: 8 * _BLOCK_BYTES] @ weights
        symbols, widths = table_symbol[windows].tolist(), table_length[windows].tolist()
        offset, stop = position - 8 * first, min(8 * _BLOCK_BYTES, stream_bits - 8 * first)
        decoded: list[int] = []
        while done + len(decoded) < count and offset < stop:
            if symbols[offset] < 0:
                raise BitstreamError("huffman: the stream holds an invalid code")
            decoded.append(symbols[offset])
            offset += widths[offset]
        out[done : done + len(decoded)] = decoded
        done += len(decoded)
        position = 8 * first + offset
    if position > stream_bits:
        raise BitstreamError("huffman: the stream ends early")
    return out


def sparse_streams(values: np.ndarray, codebook: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The relative-index and codebook-index streams of a flat tensor (see the module doc).

    Args:
        values: Flat float32 tensor; every non-zero value is in ``codebook``.
        codebook: Sorted distinct non-zero values.
        index_bits: Bits of a relative index.

    Returns:
        (gaps, codes): zeros skipped before each entry, and 0 (filler zero) or 1 + centroid index.
    """
    positions = np.flatnonzero(values)
    codes = np.searchsorted(codebook, values[positions]) + 1
    gaps = np.diff(positions, prepend=-1) - 1
    longest = (1 << index_bits) - 1
    fillers = gaps // (longest + 1)
    if not fillers.any():
        return gaps, codes
    out_gaps, out_codes = [], []
    for gap, code, extra in zip(gaps.tolist(), codes.tolist(), fillers.tolist(), strict=True):
        out_gaps += [longest] * extra + [gap - extra * (longest + 1)]
        out_codes += [0] * extra + [code]
    return np.asarray(out_gaps, dtype=np.int64), np.asarray(out_codes, dtype=np.int64)


def encode(values: np.ndarray, index_bits: int = 8) -> bytes:
    """Code a weight-shared tensor losslessly.

    Args:
        values: The tensor (any shape; coded flat, in C order), float32 values.
        index_bits: Bits of a relative index, 1 to 16 (Deep Compression used 8 for conv layers).

    Returns:
        The payload.

    Raises:
        NnslimError: Bad ``index_bits``, or more distinct non-zero values than a codebook holds.
    """
    if not 1 <= index_bits <= 16:
        raise NnslimError(f"huffman: index_bits must be 1 to 16, not {index_bits}")
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    codebook = np.unique(flat[flat != 0])
    if len(codebook) > MAX_CLUSTERS:
        raise NnslimError(
            f"huffman: {len(codebook)} distinct values; share the weights first (k-means, at most {MAX_CLUSTERS})"
        )
    gaps, codes = sparse_streams(flat, codebook, index_bits)
    gap_lengths = code_lengths(np.bincount(gaps, minlength=1 << index_bits))
    code_lengths_ = code_lengths(np.bincount(codes, minlength=len(codebook) + 1))
    gap_stream = _encode_symbols(gaps, gap_lengths)
    code_stream = _encode_symbols(codes, code_lengths_)
    return b"".join(
        (
            _HEAD.pack(index_bits, len(gaps), len(codebook), len(gap_stream)),
            codebook.astype("<f4").tobytes(),
            gap_lengths.astype(np.uint8).tobytes(),
            code_lengths_.astype(np.uint8).tobytes(),
            gap_stream,
            code_stream,
        )
    )


def max_payload_bytes(elements: int) -> int:
    """Most bytes a payload of ``encode`` takes for a tensor of ``elements`` values (two streams of 16-bit codes)."""
    return _HEAD.size + 4 * MAX_CLUSTERS + (1 << 16) + MAX_CLUSTERS + 1 + 2 * (2 * elements + 1)


def decode(payload: bytes, elements: int) -> np.ndarray:
    """Decode a payload of ``encode`` into a flat float32 array of ``elements`` values.

    Raises:
        BitstreamError: A payload that is truncated, inconsistent or does not fill the tensor.
    """
    if len(payload) < _HEAD.size:
        raise BitstreamError("huffman: truncated payload")
    index_bits, entries, clusters, gap_bytes = _HEAD.unpack_from(payload)
    if not 1 <= index_bits <= 16 or clusters > MAX_CLUSTERS:
        raise BitstreamError(f"huffman: bad payload header (index bits {index_bits}, {clusters} clusters)")
    if entries > elements:
        raise BitstreamError(f"huffman: {entries} entries for a tensor of {elements} elements")
    start = _HEAD.size
    sizes = (4 * clusters, 1 << index_bits, clusters + 1, gap_bytes)
    parts = []
    for size in sizes:
        if start + size > len(payload):
            raise BitstreamError("huffman: truncated payload")
        parts.append(payload[start : start + size])
        start += size
    codebook = np.frombuffer(parts[0], dtype="<f4")
    gap_lengths = np.frombuffer(parts[1], dtype=np.uint8).astype(np.int64)
    code_lengths_ = np.frombuffer(parts[2], dtype=np.uint8).astype(np.int64)
    gaps = _decode_symbols(parts[3], gap_lengths, entries)
    codes = _decode_symbols(payload[start:], code_lengths_, entries)
    positions = np.cumsum(gaps + 1) - 1
    if entries and (positions[-1] >= elements or codes.max() > clusters):
        raise BitstreamError("huffman: entries run past the end of the tensor")
    out = np.zeros(elements, dtype=np.float32)
    out[positions] = np.concatenate([[0.0], codebook]).astype(np.float32)[codes]
    return out


def compression_rate(elements: int, clusters: int, bits: int = 32) -> float:
    """Deep Compression's rate for weight sharing alone: r = n·b / (n·log2(k) + k·b)."""
    denominator = elements * math.log2(max(clusters, 1)) + clusters * bits
    return elements * bits / denominator if denominator else math.inf
