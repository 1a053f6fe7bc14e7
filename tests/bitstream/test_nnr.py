import numpy as np
import pytest

from nnslim.bitstream import nnr
from nnslim.bitstream.container import BitstreamError
from nnslim.errors import NnslimError


def _tensors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": (rng.normal(size=(16, 8, 3, 3)) * 0.05).astype(np.float32),
        "conv.bias": (rng.normal(size=16) * 0.01).astype(np.float32),
        "shared.indices": rng.integers(0, 17, size=(8, 8, 3, 3)).astype(np.int32),
    }


def test_step_size_doubles_every_four_qps() -> None:
    assert nnr.step_size(-38) == pytest.approx(6 * 2.0**-12)
    assert nnr.step_size(-20) == pytest.approx(2.0**-5)
    assert nnr.step_size(-16) == pytest.approx(2 * nnr.step_size(-20))


@pytest.mark.parametrize("dependent", [False, True])
def test_round_trip_within_the_quantization_step(dependent: bool) -> None:
    tensors = _tensors()
    decoded = nnr.decode(nnr.encode(tensors, qp=-32, nonweight_qp=-48, dependent=dependent))
    assert decoded.keys() == tensors.keys()
    # uniform: within half a step. Dependent: two interleaved quantizers of twice the step, chosen by a
    # rate-distortion trellis, so single errors reach past one step but stay small on average.
    bound = 2.0 if dependent else 0.5
    error = decoded["conv.weight"] - tensors["conv.weight"]
    assert np.abs(error).max() <= bound * nnr.step_size(-32) + 1e-7
    assert np.sqrt(np.mean(error**2)) <= 0.6 * nnr.step_size(-32)
    assert np.abs(decoded["conv.bias"] - tensors["conv.bias"]).max() <= bound * nnr.step_size(-48) + 1e-7
    assert decoded["shared.indices"].dtype == np.int32
    assert np.array_equal(decoded["shared.indices"], tensors["shared.indices"])


def test_nncodec_decoder_reads_our_payload_directly() -> None:
    """Interoperability: NNCodec's own decoding chain, called as its `decompress` does, gives our tensors."""
    from nncodec.nnc_core import approximator, coder

    tensors = _tensors(1)
    payload = nnr.encode(tensors, qp=-36, nonweight_qp=-48)
    model_info = nnr._empty_model_info()
    decoded = coder.decode(bytearray(payload), model_info, hls_stats={})
    approximator.rec(decoded)
    theirs = approximator.recompose_params(model_info, decoded)["parameters"]
    ours = nnr.decode(payload)
    assert len(payload) > 0 and theirs.keys() == ours.keys()
    for name in ours:
        assert np.array_equal(np.asarray(theirs[name]).reshape(ours[name].shape), ours[name]), name
        assert list(model_info["parameter_dimensions"][name]) == list(tensors[name].shape)


def test_deterministic_and_smaller_at_coarser_qp() -> None:
    tensors = _tensors()
    fine = nnr.encode(tensors, qp=-40, nonweight_qp=-48)
    assert fine == nnr.encode(tensors, qp=-40, nonweight_qp=-48)
    assert len(nnr.encode(tensors, qp=-24, nonweight_qp=-48)) < len(fine)


def test_refusals() -> None:
    with pytest.raises(NnslimError, match="qp must be in"):
        nnr.encode(_tensors(), qp=200, nonweight_qp=-48)
    with pytest.raises(NnslimError, match="float64"):
        nnr.encode({"x": np.zeros(3)}, qp=-32, nonweight_qp=-48)
    with pytest.raises(NnslimError, match="too large"):
        nnr.encode({"w": np.full((2, 2), 1e12, np.float32)}, qp=-40, nonweight_qp=-48)


def test_corrupt_payloads_raise_bitstream_errors() -> None:
    payload = nnr.encode(_tensors(), qp=-32, nonweight_qp=-48)
    rng = np.random.default_rng(0)
    for trial in range(200):
        damaged = bytearray(payload[: rng.integers(0, len(payload))] if trial % 4 == 0 else payload)
        if trial % 4:
            damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        try:
            decoded = nnr.decode(bytes(damaged))
        except BitstreamError:
            continue
        assert isinstance(decoded, dict)  # a flip the format cannot see (the container's CRCs do)
