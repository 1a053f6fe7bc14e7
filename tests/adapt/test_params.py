import numpy as np
import pytest
import torch

from nnslim.adapt import params
from nnslim.errors import NnslimError
from tests.adapt.common import tiny_filter


def _run(model: torch.nn.Module) -> torch.Tensor:
    x = torch.linspace(0, 1, 2 * 24 * 40).reshape(2, 1, 24, 40)
    with torch.no_grad():
        return model(x, torch.full((2,), 37.0))


@pytest.mark.parametrize("mode", ["biases", "multipliers", "affine", "last"])
def test_only_what_the_mode_adapts_can_train_and_the_update_reproduces_the_tuned_filter(mode: str) -> None:
    base = tiny_filter()
    tuned = params.trainable(base, mode)  # type: ignore[arg-type]
    free = [p for p in tuned.parameters() if p.requires_grad]
    assert sum(p.numel() for p in free) == params.size(base, mode) > 0  # type: ignore[arg-type]
    with torch.no_grad():
        for p in free:
            p.add_(torch.randn_like(p) * 0.1)
    update = params.vector(base, tuned, mode)  # type: ignore[arg-type]
    applied = params.apply_update(base, mode, update)  # type: ignore[arg-type]
    torch.testing.assert_close(_run(applied), _run(tuned), atol=1e-5, rtol=1e-5)
    assert not any(n.endswith(params.MULTIPLIER) for n, _ in applied.named_parameters())
    assert torch.equal(_run(base), _run(tiny_filter()))


def test_the_sizes_of_each_mode() -> None:
    base = tiny_filter()  # convolutions 2->8, 8->8, 8->1
    assert params.size(base, "biases") == params.size(base, "multipliers") == 17
    assert params.size(base, "affine") == 2 * 17
    assert params.size(base, "last") == 8 * 9 + 1
    assert params.size(base, "none") == 0


def test_an_update_of_another_length_or_mode_is_refused() -> None:
    with pytest.raises(NnslimError, match="holds 3 values; a biases update of this filter holds 17"):
        params.apply_update(tiny_filter(), "biases", np.zeros(3, np.float32))
    with pytest.raises(NnslimError, match="--adapt must be one of"):
        params.check_mode("weights")
