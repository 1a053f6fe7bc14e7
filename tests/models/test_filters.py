from pathlib import Path

import pytest
import torch

from nnslim.errors import NnslimError
from nnslim.models.filters import REGISTRY, ArchSpec, build, kmac_per_pixel, parameter_count, takes_qp


@pytest.mark.parametrize(("name", "params"), [("postfilter", 185_857), ("vrcnn", 54_673), ("inloop", 613_060)])
def test_architectures_have_their_published_sizes(name: str, params: int) -> None:
    assert parameter_count(build(ArchSpec(name))) == params


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("qp_input", [False, True])
def test_forward_and_a_training_step(name: str, qp_input: bool) -> None:
    torch.manual_seed(0)
    model = build(ArchSpec(name, {"qp_input": qp_input}))
    assert takes_qp(model) == qp_input
    x = torch.rand(2, 1, 16, 16)
    target = x.clamp(0.1, 0.9)
    qp = torch.tensor([37.0, 22.0])
    out = model(x, qp) if qp_input else model(x)
    assert out.shape == x.shape
    assert torch.equal(out, x), "a new filter starts as the identity"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(model(x, qp) if qp_input else model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_kmac_per_pixel_of_the_postfilter() -> None:
    # 9 * (1*64 + 5*64*64 + 64*1) MACs per pixel
    assert kmac_per_pixel(build(ArchSpec("postfilter"))) == pytest.approx(185.472)


def test_user_factory_from_a_file(tmp_path: Path) -> None:
    source = tmp_path / "mine.py"
    source.write_text(
        "from torch import nn\n"
        "def make(width=4):\n    return nn.Conv2d(1, 1, 3, padding=1)\n"
        "def broken():\n    return 42\n"
    )
    assert isinstance(build(ArchSpec(f"{source}:make", {"width": 8})), torch.nn.Conv2d)
    with pytest.raises(NnslimError, match=r"returned int, not a torch\.nn\.Module"):
        build(ArchSpec(f"{source}:broken"))
    with pytest.raises(NnslimError, match="no callable 'absent'"):
        build(ArchSpec(f"{source}:absent"))


def test_user_factory_from_a_module() -> None:
    assert isinstance(build(ArchSpec("torch.nn:Identity")), torch.nn.Identity)


def test_unknown_architecture_and_bad_arguments() -> None:
    with pytest.raises(NnslimError, match="unknown architecture 'unet'"):
        build(ArchSpec("unet"))
    with pytest.raises(NnslimError, match="bad arguments for architecture 'vrcnn'"):
        build(ArchSpec("vrcnn", {"width": 3}))
