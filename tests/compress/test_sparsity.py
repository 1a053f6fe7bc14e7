import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.compress.constraints import constrained_layers, finalize
from nnslim.compress.sparsity import (
    Mask,
    apply_masks,
    gradual_sparsity,
    magnitude_masks,
    prunable_weights,
    sparsity_of,
)
from nnslim.errors import NnslimError
from nnslim.models.layers import SeparableConv2d


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), SeparableConv2d(4, 2, 3, 3, 1, True))


def _pruned(mask: torch.Tensor) -> float:
    return 1 - mask.float().mean().item()


def test_prunable_weights_include_the_convolutions_inside_a_separable_one() -> None:
    assert list(prunable_weights(_model())) == ["0", "2.vertical", "2.horizontal"]
    with pytest.raises(NnslimError, match="'1' is not a Conv2d or Linear"):
        prunable_weights(_model(), ["1"])


def test_global_masks_hit_the_sparsity_with_one_threshold() -> None:
    model = _model()
    masks = magnitude_masks(model, 0.5)
    weights = {name: layer.weight.detach().abs() for name, layer in prunable_weights(model).items()}
    kept = torch.cat([weights[n][m] for n, m in masks.items()])
    dropped = torch.cat([weights[n][~m] for n, m in masks.items()])
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * total)
    assert dropped.max() <= kept.min()


def test_layer_masks_hit_the_sparsity_in_every_layer_and_skip_layers() -> None:
    masks = magnitude_masks(_model(), 0.25, scope="layer", skip=["0"])
    assert set(masks) == {"2.vertical", "2.horizontal"}
    for mask in masks.values():
        assert int((~mask).sum()) == round(0.25 * mask.numel())


def test_zero_weights_count_as_pruned() -> None:
    model = _model()
    with torch.no_grad():
        model[0].weight[:2] = 0
    masks = magnitude_masks(model, 0.1, scope="layer")
    assert not masks["0"][:2].any()
    assert _pruned(masks["0"]) == 0.5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(NnslimError, match="sparsity must be in"):
        magnitude_masks(_model(), 1.0)
    with pytest.raises(NnslimError, match="unknown pruning scope"):
        magnitude_masks(_model(), 0.5, scope="channel")
    with pytest.raises(NnslimError, match="mask for 0 has shape"):
        apply_masks(_model(), {"0": torch.ones(3, dtype=torch.bool)})


def test_masked_weights_stay_zero_through_fine_tuning_and_finalize() -> None:
    model = _model()
    masks = magnitude_masks(model, 0.6)
    apply_masks(model, masks)
    assert set(constrained_layers(model)) == set(masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.rand(2, 1, 6, 6)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
    assert sparsity_of(model) >= 0.6
    finalize(model)
    assert constrained_layers(model) == {}
    for name, layer in prunable_weights(model).items():
        assert type(layer.weight) is nn.Parameter
        assert (layer.weight[~masks[name]] == 0).all()
    assert sparsity_of(model) >= 0.6


def test_applying_masks_again_tightens_the_one_mask() -> None:
    model = _model()
    apply_masks(model, magnitude_masks(model, 0.2))
    apply_masks(model, magnitude_masks(model, 0.7))
    masks = [p for p in model[0].parametrizations.weight if isinstance(p, Mask)]
    assert len(masks) == 1
    assert sparsity_of(model) == pytest.approx(0.7, abs=0.01)
    assert parametrize.is_parametrized(model[2].vertical, "weight")


def test_schedule_runs_from_initial_to_final_and_clamps() -> None:
    assert gradual_sparsity(0, 10, 0.8) == 0.0
    assert gradual_sparsity(-5, 10, 0.8, initial=0.1) == pytest.approx(0.1)
    assert gradual_sparsity(10, 10, 0.8) == pytest.approx(0.8)
    assert gradual_sparsity(50, 10, 0.8) == pytest.approx(0.8)
    values = [gradual_sparsity(t, 10, 0.8) for t in range(11)]
    assert values == sorted(values)
    assert values[5] == pytest.approx(0.8 * (1 - 0.5**3))
    with pytest.raises(NnslimError, match="at least 1 step"):
        gradual_sparsity(0, 0, 0.8)
