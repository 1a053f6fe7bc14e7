from pathlib import Path

import numpy as np
import onnx
import pytest
from torch import nn

from nnslim.compress import constraints
from nnslim.compress.quantize import quantize_uniform
from nnslim.deploy.qat import QatConfig
from nnslim.deploy.quantize import DeployConfig, Deployment, deploy_model
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import onnx_session
from nnslim.models.filters import ArchSpec
from tests.compress.user_filter import UserFilter
from tests.deploy.common import ARCH, QP_ARCH, tiny_filter, tiny_pair

CALIBRATION = [tiny_pair("Train", seed=1), tiny_pair("Train2", seed=2)]
VALIDATION = [tiny_pair("Val", seed=3)]
FAST = DeployConfig(max_loss_db=1.0, calibration_tiles=8, tile=32, ranking_tiles=4, frame_step=1, threads=1)


def _deploy(model: nn.Module, **changes: object) -> Deployment:
    config = DeployConfig(**{**FAST.__dict__, **changes})  # type: ignore[arg-type]
    return deploy_model(model, CALIBRATION, VALIDATION, config)


@pytest.mark.parametrize("arch", [ARCH, QP_ARCH], ids=["postfilter", "postfilter-qp"])
def test_the_int8_model_is_qdq_with_int8_weights_and_runs_in_onnx_runtime(arch: ArchSpec, tmp_path: Path) -> None:
    model = tiny_filter(arch)
    before = [p.detach().clone() for p in model.parameters()]
    deployment = _deploy(model)
    assert all((a == b).all() for a, b in zip(before, model.parameters(), strict=True))  # the filter is not changed
    chosen = deployment.chosen
    assert len(deployment.trials) == 1 and chosen.float_nodes == () and abs(chosen.loss_db) <= 1.0
    graph = onnx.load_from_string(chosen.data).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    assert weights["body.2.weight_quantized"].dtype == np.int8
    assert weights["body.2.weight_scale"].shape == (8,)  # per channel
    assert deployment.calibration_tiles == 8
    path = tmp_path / "int8.onnx"
    path.write_bytes(chosen.data)
    session = onnx_session(path, threads=1)
    feeds = {"luma": np.full((1, 1, 24, 40), 0.5, np.float32)}
    if len(session.get_inputs()) == 2:
        feeds["qp"] = np.array([37.0], np.float32)
    (restored,) = session.run(None, feeds)
    assert restored.shape == (1, 1, 24, 40) and np.isfinite(restored).all()


def test_a_budget_int8_cannot_meet_is_refused_naming_the_nodes_that_lose_most() -> None:
    model = tiny_filter()
    loss = _deploy(model).chosen.loss_db
    assert loss > 0.1
    with pytest.raises(NnslimError, match="the nodes that lose most") as refused:
        _deploy(model, max_loss_db=loss / 3)
    message = str(refused.value)
    assert "\n" not in message and "--float-fallback" in message
    assert "/Add" in message or "/body/body." in message


def test_float_fallback_keeps_the_worst_nodes_float_until_the_budget_holds() -> None:
    model = tiny_filter()
    loss = _deploy(model).chosen.loss_db
    deployment = _deploy(model, max_loss_db=loss / 3, float_fallback=True)
    trials = deployment.trials
    assert trials[0].loss_db == pytest.approx(loss) and trials[0].float_nodes == ()
    assert len(trials) >= 2 and trials[-1].loss_db <= loss / 3
    kept = deployment.chosen.float_nodes
    assert [n.why for n in kept] == ["loss"] * len(kept) and len(kept) == len(trials) - 1
    assert all(t.sqnr_gain_db is not None for t in trials[1:])
    graph = onnx.load_from_string(deployment.chosen.data).graph
    assert {n.name for n in kept} <= {n.name for n in graph.node}
    assert "QuantizeLinear" in {n.op_type for n in graph.node}  # the rest stays int8


def test_an_operator_without_int8_is_refused_by_name_unless_float_fallback() -> None:
    model = UserFilter(channels=8).eval()
    with pytest.raises(NnslimError, match=r"ONNX Runtime cannot run .*DepthToSpace \(/up/DepthToSpace\)"):
        _deploy(model)
    deployment = _deploy(model, float_fallback=True, max_loss_db=10.0)
    kept = {n.name: n for n in deployment.chosen.float_nodes}
    assert kept["/up/DepthToSpace"].why == "no int8 operator"
    assert {n.op_type for n in kept.values()} == {"DepthToSpace", "PRelu"}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(NnslimError, match="0 dB or more"):
        _deploy(tiny_filter(), max_loss_db=-0.1)
    with pytest.raises(NnslimError, match="frame step"):
        _deploy(tiny_filter(), frame_step=0)
    with pytest.raises(NnslimError, match="calibration must be one of minmax, percentile, not 'entropy'"):
        _deploy(tiny_filter(), calibration="entropy")
    with pytest.raises(NnslimError, match="fine-tuning steps must be 0 or more"):
        _deploy(tiny_filter(), qat=QatConfig(steps=-1))


def test_weights_trained_on_compress_8_bit_grid_keep_their_scales_and_values_in_int8() -> None:
    model = tiny_filter()
    tables = quantize_uniform(model, bits=8, per_channel=True)
    constraints.finalize(model)
    graph = onnx.load_from_string(_deploy(model).chosen.data).graph
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    for name, table in tables.items():
        scale = weights[f"{name}.weight_scale"]
        np.testing.assert_allclose(scale, table["scale"], rtol=1e-6)  # the scales learned in compress, as they are
        restored = weights[f"{name}.weight_quantized"].astype(np.float32) * scale.reshape(-1, 1, 1, 1)
        np.testing.assert_allclose(restored, model.get_submodule(name).weight.detach().numpy(), atol=1e-7)


def test_a_budget_that_even_the_float_model_misses_is_refused_before_any_ranking() -> None:
    config = DeployConfig(**{**FAST.__dict__, "max_loss_db": 0.0, "float_fallback": True})  # type: ignore[arg-type]
    statuses: list[str] = []
    with pytest.raises(NnslimError, match="cannot be met: even with every int8 node kept float the model loses"):
        deploy_model(tiny_filter(), CALIBRATION, VALIDATION, config, statuses.append, against=tiny_filter(seed=5))
    assert not any("ranking" in s for s in statuses)
