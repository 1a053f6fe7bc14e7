import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.deploy.qat import ActivationRange, QatConfig, quantization_aware
from nnslim.models.data import LumaPairs
from tests.deploy.common import tiny_filter, tiny_pair


def _mse(model: nn.Module, pair: LumaPairs) -> float:
    x = torch.from_numpy(pair.decoded[:, None].astype(np.float32) / 255)
    y = torch.from_numpy(pair.original[:, None].astype(np.float32) / 255)
    with torch.inference_mode():
        return float(torch.mean((model(x) - y) ** 2))


def test_activations_are_rounded_to_256_levels_over_a_range_that_holds_zero() -> None:
    rounding = ActivationRange()
    x = torch.linspace(0.2, 1.7, 1000)
    out = rounding(x)
    step = 1.7 / 255  # the range is stretched down to 0
    assert len(torch.unique(out)) <= 256
    np.testing.assert_allclose((out / step).numpy(), np.round((out / step).numpy()), atol=1e-3)
    assert float((out - x).abs().max()) <= step / 2 + 1e-6


def test_no_steps_gives_an_unchanged_copy() -> None:
    model = tiny_filter()
    copy = quantization_aware(model, [tiny_pair("a")], QatConfig(steps=0))
    assert copy is not model
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values(), strict=True))


def test_fine_tuning_lowers_the_loss_and_leaves_a_plain_float_filter() -> None:
    model = tiny_filter()
    pairs = [tiny_pair("a", frames=4, seed=s) for s in range(2)]
    tuned = quantization_aware(model, pairs, QatConfig(steps=40, lr=1e-3, batch=4, patch=32))
    assert set(tuned.state_dict()) == set(model.state_dict())
    assert not any(parametrize.is_parametrized(m) or m._forward_hooks for m in tuned.modules())
    assert not tuned.training
    assert _mse(tuned, pairs[0]) < 0.8 * _mse(model, pairs[0])
