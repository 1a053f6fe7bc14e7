from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from nnslim.deploy.graph import prepare, unsupported_nodes
from nnslim.deploy.rewrite import global_pool, split_prelu
from nnslim.evaluate.runtime import export_onnx
from nnslim.models.filters import ArchSpec
from tests.conftest import random_filter


class TwoPrelus(nn.Module):
    """Conv, PReLU (one slope per channel), Conv; then Conv, PReLU (one slope), Conv; and a PReLU read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 6, 3, padding=1)
        self.act_a = nn.PReLU(6, init=0.3)
        self.b = nn.Conv2d(6, 5, 3, padding=1)
        self.act_b = nn.PReLU(1, init=-0.2)
        self.c = nn.Conv2d(5, 5, 1)
        self.act_c = nn.PReLU(5)
        self.d = nn.Conv2d(5, 1, 3, padding=1)
        with torch.no_grad():
            self.act_a.weight.uniform_(-0.5, 0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c(self.act_b(self.b(self.act_a(self.a(x)))))
        h = self.act_c(h)
        return x + self.d(h) + h.mean(dim=1, keepdim=True)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    return np.asarray(out)


def test_a_prelu_between_two_convolutions_becomes_a_relu_and_the_output_stays_the_same(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = onnx.load(export_onnx(TwoPrelus().eval(), tmp_path / "m.onnx"))
    rewritten, count = split_prelu(model)
    assert count == 2  # act_c's output is read by a convolution and by the mean: left as it is
    assert [n.op_type for n in rewritten.graph.node].count("PRelu") == 1
    assert len(rewritten.graph.initializer) == len(model.graph.initializer) - 2  # the two slopes, unused now
    onnx.checker.check_model(rewritten)
    x = np.random.default_rng(0).random((1, 1, 24, 40), dtype=np.float32)
    np.testing.assert_allclose(_run(rewritten, x), _run(model, x), atol=1e-5)


def test_a_spatial_mean_becomes_a_global_average_pool_and_the_output_stays_the_same(tmp_path: Path) -> None:
    filt = random_filter(ArchSpec("inloop", {"channels": 8, "blocks": 2}), 3, 0.1)
    model = onnx.load(export_onnx(filt, tmp_path / "m.onnx"))
    rewritten, count = global_pool(model)
    assert count == 2
    assert "ReduceMean" not in {n.op_type for n in rewritten.graph.node}
    x = np.random.default_rng(1).random((1, 1, 32, 48), dtype=np.float32)
    np.testing.assert_allclose(_run(rewritten, x), _run(model, x), atol=1e-5)


def test_the_prepared_in_loop_filter_leaves_only_pixel_shuffle_without_int8(tmp_path: Path) -> None:
    filt = random_filter(ArchSpec("inloop", {"channels": 8, "blocks": 2}), 3, 0.1)
    prepared = onnx.load(prepare(filt, tmp_path))
    assert {n.op_type for n in unsupported_nodes(prepared)} == {"DepthToSpace"}
    x = torch.rand(1, 1, 32, 48)
    with torch.inference_mode():
        expected = filt(x).numpy()
    np.testing.assert_allclose(_run(prepared, x.numpy()), expected, atol=1e-5)
