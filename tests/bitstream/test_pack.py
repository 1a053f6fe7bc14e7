from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from nnslim.bitstream import nnr
from nnslim.bitstream.container import BitstreamError, read, write
from nnslim.bitstream.pack import SIDE, PackConfig, pack, unpack
from nnslim.compress import constraints, quantize
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.filters import ArchSpec, build
from tests.compress.user_filter import USER

SPEC = ArchSpec("postfilter", {"channels": 8, "layers": 3})


def _model(spec: ArchSpec = SPEC, seed: int = 0) -> tuple[nn.Module, dict]:
    model = build(spec)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval(), {"arch": spec.to_dict(), "layers": {}, "training": {"codec": "x265", "qps": [37]}}


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_raw_is_bit_exact_and_files_are_deterministic() -> None:
    model, meta = _model()
    data = pack(model, meta, PackConfig("raw"))
    assert data == pack(model, meta, PackConfig("raw"))
    decoded, description = unpack(data)
    for name, value in _state(model).items():
        assert torch.equal(decoded.state_dict()[name], value), name
    assert description["arch"] == SPEC.to_dict() and description["training"] == {"codec": "x265", "qps": [37]}
    half, _ = unpack(pack(model, meta, PackConfig("raw", raw_dtype="float16")))
    assert torch.equal(half.state_dict()["body.0.weight"], model.state_dict()["body.0.weight"].half().float())


@pytest.mark.parametrize("dependent", [False, True])
def test_nnr_is_within_its_quantization_step(dependent: bool) -> None:
    model, meta = _model()
    config = PackConfig("nnr", nnr_qp=-36, nonweight_qp=-52, dependent=dependent)
    decoded, _ = unpack(pack(model, meta, config))
    factor = 2.0 if dependent else 0.5
    for name, value in _state(model).items():
        qp = config.nnr_qp if value.dim() > 1 else config.nonweight_qp
        error = (decoded.state_dict()[name] - value).abs().max().item()
        assert error <= factor * nnr.step_size(qp) + 1e-7, name


def test_huffman_is_exact_on_shared_weights_and_nnr_lossless_too() -> None:
    model, meta = _model()
    quantize.share_weights(model, bits=3)
    constraints.finalize(model)
    for config in (PackConfig("huffman", bits=3), PackConfig("nnr", lossless=True)):
        data = pack(model, meta, config)
        decoded, _ = unpack(data)
        for name, value in _state(model).items():
            if name.endswith("weight") or config.coder == "huffman":
                assert torch.equal(decoded.state_dict()[name], value), (config.coder, name)
    table = {t.name: t for t in read(pack(model, meta, PackConfig("nnr", lossless=True))).tensors}
    assert table["body.0.weight"].params == {"codebook": "body.0.weight" + SIDE}
    assert table["body.0.weight" + SIDE].shape == (8,)


def test_huffman_shares_weights_that_are_not_shared_yet() -> None:
    model, meta = _model()
    decoded, _ = unpack(pack(model, meta, PackConfig("huffman", bits=2)))
    weight = decoded.state_dict()["body.2.weight"]
    assert len(torch.unique(weight[weight != 0])) <= 4
    assert torch.equal(decoded.state_dict()["body.2.bias"], model.state_dict()["body.2.bias"])


def test_slim_user_model_with_batchnorm_round_trips() -> None:
    spec = ArchSpec(USER)
    model, meta = _model(spec)
    model.conv1 = nn.Conv2d(16, 12, 3, padding=1)  # pruned inside the residual branch
    model.conv2 = nn.Conv2d(12, 16, 3, padding=1)
    meta["layers"] = layers.changed(model, build(spec))
    data = pack(model.eval(), meta, PackConfig("nnr", coders={"norm.running_var": "raw"}))
    with pytest.raises(BitstreamError, match="user factory"):
        unpack(data)
    decoded, _ = unpack(data, trusted_factory=USER)
    x = torch.rand(1, 1, 16, 16)
    assert decoded.conv1.out_channels == 12
    assert (decoded(x) - model(x)).abs().max().item() < 0.05
    assert decoded.state_dict()["norm.num_batches_tracked"].dtype == torch.int64


def test_bad_settings_are_refused() -> None:
    model, meta = _model()
    with pytest.raises(NnslimError, match="unknown coder"):
        PackConfig("zip")
    with pytest.raises(NnslimError, match="names no tensor"):
        pack(model, meta, PackConfig("nnr", coders={"nothing": "raw"}))


def test_a_file_that_does_not_fit_its_architecture_is_refused() -> None:
    model, meta = _model()
    data = pack(model, {**meta, "arch": ArchSpec("postfilter", {"channels": 8, "layers": 4}).to_dict()}, PackConfig())
    with pytest.raises(BitstreamError, match="does not fit"):
        unpack(data)


def test_fuzz_ten_thousand_mutated_files() -> None:
    """Flips, overwrites, truncations, insertions and deletions are refused in one line unless they cancel out.

    A file whose mutations cancel out is the original, and decodes to the original's weights.
    """
    model, meta = _model()
    originals = [pack(model, meta, PackConfig(coder)) for coder in ("nnr", "huffman", "raw")]
    weights = [_state(unpack(data)[0]) for data in originals]
    rng = np.random.default_rng(0)
    outcomes = {"refused": 0, "decoded": 0}
    for trial in range(10_000):
        data = bytearray(originals[trial % 3])
        for _ in range(int(rng.integers(1, 4))):
            kind, at = int(rng.integers(5)), int(rng.integers(len(data)))
            if kind == 0:
                data[at] ^= 1 << int(rng.integers(8))
            elif kind == 1:
                data[at] = int(rng.integers(256))
            elif kind == 2:
                del data[at:]
            elif kind == 3:
                data[at:at] = rng.bytes(int(rng.integers(1, 9)))
            else:
                del data[at : at + int(rng.integers(1, 9))]
            if not data:
                break
        try:
            decoded, _ = unpack(bytes(data))
        except BitstreamError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
            continue
        outcomes["decoded"] += 1
        assert bytes(data) == originals[trial % 3]  # any change left in the file fails a CRC
        for name, value in weights[trial % 3].items():
            assert torch.equal(decoded.state_dict()[name], value), name
    assert outcomes["refused"] >= 9_900


def test_the_nnr_qp_reads_under_both_names_from_new_and_older_files() -> None:
    model, meta = _model()
    data = pack(model, meta, PackConfig("nnr", nnr_qp=-30))
    container = read(data)
    assert "qp" not in container.model["packing"] and container.model["packing"]["nnr_qp"] == -30
    older = {k: (-30 if k == "nnr_qp" else v) for k, v in container.model["packing"].items()}
    older["qp"] = older.pop("nnr_qp")
    written = write(replace(container, model=container.model | {"packing": older}))
    for file in (data, written):
        packing = unpack(file)[1]["packing"]
        assert packing["nnr_qp"] == packing["qp"] == -30
