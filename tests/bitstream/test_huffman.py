import numpy as np
import pytest

from nnslim.bitstream import huffman
from nnslim.bitstream.container import BitstreamError
from nnslim.errors import NnslimError


def _shared(shape: tuple[int, ...], clusters: int, sparsity: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codebook = rng.normal(size=clusters).astype(np.float32)
    values = codebook[rng.integers(0, clusters, size=shape)]
    values[rng.random(shape) < sparsity] = 0
    return values


@pytest.mark.parametrize("index_bits", [1, 2, 4, 8])
@pytest.mark.parametrize("sparsity", [0.0, 0.7, 0.99])
def test_round_trip_is_exact(index_bits: int, sparsity: float) -> None:
    values = _shared((16, 8, 3, 3), 16, sparsity)
    decoded = huffman.decode(huffman.encode(values, index_bits), values.size)
    assert np.array_equal(decoded.reshape(values.shape), values)


def test_long_gaps_use_filler_zeros() -> None:
    values = np.zeros(100, dtype=np.float32)
    values[[0, 40, 99]] = [1.5, -2.0, 1.5]
    gaps, codes = huffman.sparse_streams(values, np.array([-2.0, 1.5], dtype=np.float32), index_bits=3)
    # a filler covers 7 zeros and its own slot: 39 zeros = 4 fillers + 7; 58 zeros = 7 fillers + 2
    assert list(gaps) == [0, *[7] * 4, 7, *[7] * 7, 2]
    assert list(codes) == [2, *[0] * 4, 1, *[0] * 7, 2]
    assert np.array_equal(huffman.decode(huffman.encode(values, 3), 100), values)


def test_edge_cases_and_coding_gain() -> None:
    for values in (np.zeros(10, np.float32), np.full(7, 0.25, np.float32), np.zeros(0, np.float32)):
        assert np.array_equal(huffman.decode(huffman.encode(values), values.size), values)
    values = _shared((64, 32, 3, 3), 16, 0.6)
    assert len(huffman.encode(values, 4)) < values.size * 4 / 8  # well under 4 bits per weight


def test_code_lengths_are_a_prefix_code_within_the_limit() -> None:
    counts = np.array([2**i for i in range(30)])  # would give a 29-bit code unlimited
    lengths = huffman.code_lengths(counts)
    assert lengths.max() <= huffman.MAX_CODE_BITS
    assert sum(2.0 ** -int(n) for n in lengths) <= 1.0


def test_refusals() -> None:
    with pytest.raises(NnslimError, match="share the weights"):
        huffman.encode(np.arange(1, 70000, dtype=np.float32))
    payload = huffman.encode(_shared((8, 8), 4, 0.5))
    with pytest.raises(BitstreamError):
        huffman.decode(payload[:-3], 64)
    with pytest.raises(BitstreamError):
        huffman.decode(payload, 10)


def test_compression_rate_formula() -> None:
    # Deep Compression's example: n = 4 weights, k = 4 clusters, 32-bit weights: 128 / (8 + 128)
    assert huffman.compression_rate(4, 4) == pytest.approx(128 / 136)
    assert huffman.compression_rate(1_000_000, 32) == pytest.approx(32e6 / (5e6 + 1024))
