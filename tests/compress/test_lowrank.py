import pytest
import torch
from torch import nn

from nnslim.compress.lowrank import (
    apply_lowrank,
    decompose,
    rank_for_energy,
    ranks_for_energy,
    ranks_for_loss,
    singular_values,
)
from nnslim.errors import NnslimError
from nnslim.models.filters import PostFilter, parameter_count
from nnslim.models.layers import SeparableConv2d


def _filter() -> PostFilter:
    torch.manual_seed(0)
    model = PostFilter(channels=4, layers=3)
    nn.init.normal_(model.body[4].weight, std=0.1)
    return model.eval()


@pytest.mark.parametrize(("padding", "bias"), [(1, True), (0, False), ("same", True), ("valid", True), (2, True)])
def test_full_rank_reproduces_the_convolution_including_borders(padding: int | str, bias: bool) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, padding=padding, bias=bias)
    split = decompose(conv, 9)
    x = torch.randn(2, 3, 7, 8)
    assert torch.allclose(split(x), conv(x), atol=1e-5)
    assert (split.horizontal.bias is None) is (not bias)


def test_weights_follow_the_svd_layout() -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3)
    split = decompose(conv, 2)
    assert split.vertical.weight.shape == (2, 2, 3, 1)
    assert split.horizontal.weight.shape == (3, 2, 1, 3)
    s = singular_values(conv)
    combined = torch.einsum("kch,nkw->nchw", split.vertical.weight[..., 0], split.horizontal.weight[:, :, 0])
    error = (combined - conv.weight).double().square().sum()
    assert error.item() == pytest.approx(s[2:].square().sum().item(), rel=1e-4)


@pytest.mark.parametrize(
    ("conv", "rank", "message"),
    [
        (nn.Conv2d(2, 2, (3, 1)), 1, "not square"),
        (nn.Conv2d(2, 2, 1), 1, "1x1 kernel"),
        (nn.Conv2d(2, 2, 3, stride=2), 1, "stride"),
        (nn.Conv2d(2, 2, 3, dilation=2), 1, "dilation"),
        (nn.Conv2d(2, 2, 3, groups=2), 1, "groups=2"),
        (nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), 1, "padding mode"),
        (nn.Conv2d(2, 2, 4, padding="same"), 1, "even kernel"),
        (nn.Conv2d(2, 2, 3, padding=(1, 0)), 1, "differs between rows and columns"),
        (nn.Conv2d(2, 2, 3), 0, "rank must be from 1 to 6"),
        (nn.Conv2d(2, 2, 3), 7, "rank must be from 1 to 6"),
    ],
)
def test_convolutions_without_an_exact_split_are_refused(conv: nn.Conv2d, rank: int, message: str) -> None:
    with pytest.raises(NnslimError, match=rf"^body\.2: .*{message}"):
        decompose(conv, rank, name="body.2")


def test_rank_for_energy() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 4, 3)
    squares = singular_values(conv).square()
    kept = squares.cumsum(0) / squares.sum()
    assert rank_for_energy(conv, 1.0) == 9
    assert rank_for_energy(conv, kept[3].item()) == 4
    assert rank_for_energy(conv, kept[3].item() + 1e-6) == 5
    silent = nn.Conv2d(2, 2, 3)
    nn.init.zeros_(silent.weight)
    assert rank_for_energy(silent, 0.9) == 1
    with pytest.raises(NnslimError, match="energy must be in"):
        rank_for_energy(conv, 0.0)


def test_apply_lowrank_replaces_named_convolutions_in_a_copy() -> None:
    model = _filter()
    split = apply_lowrank(model, {"body.2": 2, "body.4": 1})
    assert isinstance(split.body[2], SeparableConv2d) and isinstance(split.body[4], SeparableConv2d)
    assert type(model.body[2]) is nn.Conv2d
    assert parameter_count(split) < parameter_count(model)
    x = torch.rand(1, 1, 8, 8)
    assert split(x).shape == x.shape
    with pytest.raises(NnslimError, match=r"body\.1 is a ReLU, not a plain Conv2d"):
        apply_lowrank(model, {"body.1": 1})
    with pytest.raises(NnslimError, match="no layer named 'tail'"):
        apply_lowrank(model, {"tail": 1})
    with pytest.raises(NnslimError, match=r"body\.2: rank must be"):
        apply_lowrank(model, {"body.2": 99})


def test_ranks_for_energy_per_layer() -> None:
    model = _filter()
    assert ranks_for_energy(model, ["body.2", "body.4"], 1.0) == {"body.2": 12, "body.4": 3}


def test_ranks_for_loss_keeps_the_loss_within_budget() -> None:
    model = _filter()
    torch.manual_seed(4)
    x = torch.rand(1, 1, 12, 12)
    target = torch.rand(1, 1, 12, 12)
    calls = []

    def psnr(m: nn.Module) -> float:
        calls.append(m)
        with torch.no_grad():
            return -10 * torch.log10((m(x) - target).square().mean()).item()

    names = ["body.0", "body.2", "body.4"]
    reference = psnr(model)
    ranks = ranks_for_loss(model, names, psnr, max_loss=0.05)
    assert reference - psnr(apply_lowrank(model, ranks)) <= 0.05
    assert sum(ranks.values()) < sum(ranks_for_energy(model, names, 1.0).values())
    assert ranks_for_loss(model, names, psnr, max_loss=100.0) == ranks_for_energy(model, names, 0.5)
    calls.clear()
    ranks_for_loss(model, names, psnr, max_loss=0.0)
    assert len(calls) <= 14


def test_a_split_that_would_not_save_weights_leaves_the_layer_alone() -> None:
    model = _filter()  # body.2 is 4 <- 4, 3x3: 144 weights; a rank-K split holds K * (4 + 4) * 3
    assert apply_lowrank(model, {"body.2": 5}).body[2].vertical.out_channels == 5  # 120 < 144
    for rank in (6, 12):  # 144 and 288 weights: no fewer than the kernel's
        kept = apply_lowrank(model, {"body.2": rank})
        assert type(kept.body[2]) is nn.Conv2d
        assert parameter_count(kept) == parameter_count(model)
        assert torch.equal(kept.body[2].weight, model.body[2].weight)
