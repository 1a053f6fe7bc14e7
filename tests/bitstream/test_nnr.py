from typing import Any

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


def _step(qp: int, qp_density: int) -> float:
    """NNR's quantization step (ISO/IEC 15938-17), written out here rather than taken from nnslim."""
    k = 1 << qp_density
    return 2.0 ** (qp >> qp_density) * (1 + (qp & (k - 1)) / k)


def _nncodec_decompress(payload: bytes) -> tuple[dict[str, np.ndarray], dict[str, int], int, dict[str, np.ndarray]]:
    """NNCodec's own ``decompress`` (nncodec/nnc/compression.py) step by step, from the bitstream alone.

    Returns:
        The quantization levels and QPs read from the bitstream, its QP density, and the tensors
        NNCodec reconstructs.
    """
    from nncodec.nnc_core import approximator, coder

    model_info: dict[str, Any] = {  # decompress's dec_model_info: empty, the bitstream fills it
        "parameter_type": {},
        "parameter_dimensions": {},
        "parameter_index": {},
        "block_identifier": {},
        "topology_storage_format": None,
        "topology_compression_format": None,
        "performance_maps": {"mps": {}, "lps": {}},
        "performance_map_flags": {
            "mps_sparsification_flag": {},
            "lps_sparsification_flag": {},
            "mps_pruning_flag": {},
            "lps_pruning_flag": {},
            "mps_unification_flag": {},
            "lps_unification_flag": {},
            "mps_decomposition_performance_map_flag": {},
            "lps_decomposition_performance_map_flag": {},
        },
    }
    decoded = coder.decode(bytearray(payload), model_info, hls_stats={}, oob_dict={}, approx_param_base=None)
    levels = {name: np.array(value) for name, value in decoded["parameters"].items()}
    qps = {name: int(qp) for name, qp in decoded["qp"].items()}
    approximator.rec(decoded)  # decompress's defaults: no batch-norm unfolding, no LSA
    tensors = approximator.recompose_params(model_info, decoded)["parameters"]
    return levels, qps, int(decoded["qp_density"]), {name: np.asarray(value) for name, value in tensors.items()}


@pytest.mark.parametrize("dependent", [False, True])
def test_nncodec_decodes_our_bitstream_alone(dependent: bool) -> None:
    """Interoperability: NNCodec's decoder, given nothing but our NNR bitstream, gives what nnslim decodes."""
    tensors = _tensors(1)
    payload = nnr.encode(tensors, qp=-36, nonweight_qp=-48, dependent=dependent)
    levels, qps, density, theirs = _nncodec_decompress(payload)
    ours = nnr.decode(payload)
    assert list(theirs) == list(ours) == list(tensors)
    for name, value in tensors.items():
        assert theirs[name].dtype == ours[name].dtype == value.dtype and theirs[name].shape == value.shape, name
        assert theirs[name].tobytes() == ours[name].tobytes(), name
    assert qps == {"conv.weight": -36, "conv.bias": -48} and density == 2
    for name, qp in qps.items():
        step = _step(qp, density)
        assert ours[name].tobytes() == (levels[name] * step).astype(np.float32).tobytes(), name
        assert np.abs(ours[name] - tensors[name]).max() <= (2.0 if dependent else 0.5) * step, name
    assert np.array_equal(ours["shared.indices"], tensors["shared.indices"])


def test_we_decode_a_bitstream_that_nncodec_wrote_with_its_own_settings() -> None:
    """Interoperability: NNCodec's encoder, set up here as its ``compress`` does, read by nnslim's decoder.

    The settings differ from nnslim's own where nnslim's decoder accepts them: QP density 3, dependent
    quantization, another CABAC unary length, no parameter optimisation, another device id.
    """
    from nncodec.nnc_core import approximator, coder, nnr_model

    rng = np.random.default_rng(2)
    tensors = {
        "features.0.weight": (rng.normal(size=(12, 4, 3, 3)) * 0.08).astype(np.float32),
        "features.0.bias": (rng.normal(size=12) * 0.02).astype(np.float32),
        "fc.weight": (rng.normal(size=(10, 48)) * 0.1).astype(np.float32),
        "codes": rng.integers(0, 9, size=(5, 7)).astype(np.int32),
    }
    model_info = nnr_model.NNRModel(tensors).model_info
    data = approximator.init_approx_data(tensors, model_info, qp_density=3, scan_order=0)
    approx_info = approximator.ApproxInfo(
        approx_data=data,
        model_info=model_info,
        approx_method="uniform",
        codebook_mode=0,
        qp=-50,
        opt_qp=False,
        disable_dq=False,
        cabac_unary_length_minus1=8,
        lambda_scale=0.0,
        nonweight_qp=-70,
    ).approx_info
    enc_info = {  # as compress sets them for a plain (not incremental) bitstream
        "cabac_unary_length_minus1": 8,
        "param_opt_flag": False,
        "partial_data_counter": 0,
        "general_profile_idc": 1,
        "node_id_present_flag": 1,
        "device_id": 3,
        "mps_parent_signalling_enabled_flag": 0,
        "parent_node_id_present_flag": 0,
        "temporal_context_modeling_flag": 0,
        "row_skip_enabled_flag": 0,
        "pre_signalling": 0,
    }
    quantized = approximator.approx(approx_info, model_info, data, enc_info)
    bitstream, _ = coder.encode(enc_info=enc_info, model_info=model_info, approx_data=quantized)
    written = {name: np.array(value) for name, value in quantized["parameters"].items()}

    ours = nnr.decode(bytes(bitstream))
    levels, qps, density, theirs = _nncodec_decompress(bytes(bitstream))
    assert list(ours) == list(theirs) == list(tensors) and density == 3
    assert qps == {"features.0.weight": -50, "features.0.bias": -70, "fc.weight": -50}
    for name, value in tensors.items():
        assert np.array_equal(levels[name], written[name]), name
        assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
        assert ours[name].tobytes() == theirs[name].tobytes(), name
    for name, qp in qps.items():
        step = _step(qp, density)
        assert ours[name].tobytes() == (written[name] * step).astype(np.float32).tobytes(), name
        assert np.abs(ours[name] - tensors[name]).max() <= 2.0 * step, name
    assert np.array_equal(ours["codes"], tensors["codes"])


@pytest.mark.parametrize("qp", [-32, -8])
@pytest.mark.parametrize("names", [("conv.weight", "conv.bias", "shared.indices"), ("conv.bias",), ("shared.indices",)])
def test_every_bitstream_begins_with_the_same_header_units(qp: int, names: tuple[str, ...]) -> None:
    tensors = {name: _tensors()[name] for name in names}
    payload = nnr.encode(tensors, qp=qp, nonweight_qp=qp - 8)
    assert payload.startswith(nnr.header()) and nnr.data_bytes(payload) == len(payload) - len(nnr.header())
    assert nnr.scan(nnr.header()) == {}


def test_a_bitstream_with_other_header_units_is_refused() -> None:
    payload = bytearray(nnr.encode(_tensors(), qp=-32, nonweight_qp=-40))
    payload[3] ^= 1  # the start unit's profile
    with pytest.raises(BitstreamError, match="header units"):
        nnr.data_bytes(bytes(payload))


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
    tensors = _tensors()
    payload = nnr.encode(tensors, qp=-32, nonweight_qp=-48)
    expected = {name: value.size for name, value in tensors.items()}
    rng = np.random.default_rng(0)
    refused = 0
    for trial in range(200):
        damaged = bytearray(payload[: rng.integers(0, len(payload))] if trial % 4 == 0 else payload)
        if trial % 4:
            damaged[rng.integers(len(damaged))] ^= 1 << int(rng.integers(8))
        try:
            decoded = nnr.decode(bytes(damaged), expected)
        except BitstreamError as exc:
            assert str(exc).startswith("nnr: ") and "\n" not in str(exc), exc
            refused += 1
            continue
        # a flip the format cannot see (the container's CRCs do) changes values only, and into numbers
        assert {name: value.size for name, value in decoded.items()} == expected
        assert all(value.dtype in (np.float32, np.int32) and np.isfinite(value).all() for value in decoded.values())
    assert refused >= 150
