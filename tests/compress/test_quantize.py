import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.compress.constraints import constrained_layers, finalize
from nnslim.compress.quantize import (
    FakeQuant,
    SharedWeights,
    codebook_table,
    kmeans,
    quantize_uniform,
    share_weights,
    uniform,
)
from nnslim.compress.sparsity import apply_masks, magnitude_masks, prunable_weights
from nnslim.errors import NnslimError
from nnslim.models.layers import SeparableConv2d


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), SeparableConv2d(4, 3, 2, 3, 1, True))


def _fine_tune(model: nn.Module, steps: int = 3) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x = torch.rand(2, 1, 6, 6)
    for _ in range(steps):
        optimizer.zero_grad()
        (model(x) - x).square().mean().backward()
        optimizer.step()


def test_uniform_per_channel_puts_values_on_each_channel_grid() -> None:
    torch.manual_seed(1)
    weight = torch.randn(5, 3, 3, 3)
    values, meta = uniform(weight, 4, per_channel=True)
    assert meta["kind"] == "uniform" and meta["bits"] == 4 and meta["per_channel"] is True
    assert len(meta["scale"]) == 5
    scale = torch.tensor(meta["scale"]).reshape(5, 1, 1, 1)
    integers = torch.round(values / scale)
    assert torch.equal(values, integers * scale)
    assert integers.abs().amax(dim=(1, 2, 3)).tolist() == [7.0] * 5
    assert (values - weight).abs().max() <= scale.max() / 2 + 1e-6


def test_uniform_per_tensor_has_one_scale_and_keeps_zeros() -> None:
    weight = torch.tensor([[0.0, 0.5], [-1.0, 0.26]])
    values, meta = uniform(weight, 2, per_channel=False)
    assert meta["scale"] == [1.0]
    assert values.tolist() == [[0.0, 0.0], [-1.0, 0.0]]
    with pytest.raises(NnslimError, match="2 to 16 bits"):
        uniform(weight, 1, per_channel=False)


def test_kmeans_is_lossless_with_few_distinct_values_and_keeps_zeros() -> None:
    weight = torch.tensor([[0.3, 0.0, -0.7], [0.3, 1.1, 0.0], [-0.7, 2.5, 0.3]])
    centroids, indices = kmeans(weight, 4)
    assert centroids.tolist() == sorted(set(weight[weight != 0].tolist()))
    assert (indices[weight == 0] == -1).all()
    assert torch.equal(torch.cat([centroids.new_zeros(1), centroids])[indices + 1], weight)


def test_kmeans_is_deterministic_and_uses_at_most_k_centroids() -> None:
    torch.manual_seed(2)
    weight = torch.randn(8, 4, 3, 3)
    weight[weight.abs() < 0.3] = 0
    centroids, indices = kmeans(weight, 8)
    again, same = kmeans(weight, 8)
    assert torch.equal(centroids, again) and torch.equal(indices, same)
    assert centroids.numel() <= 8 and (centroids[1:] > centroids[:-1]).all()
    assert indices.dtype == torch.int64 and indices.shape == weight.shape
    assert (indices[weight == 0] == -1).all() and (indices[weight != 0] >= 0).all()
    nearest = (weight[weight != 0][:, None] - centroids).abs().argmin(dim=1)
    assert torch.equal(indices[weight != 0], nearest)


def test_centroid_gradient_is_the_sum_over_its_cluster() -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3)
    centroids, indices = kmeans(conv.weight, 4)
    parametrize.register_parametrization(conv, "weight", SharedWeights(centroids, indices))
    x = torch.randn(1, 2, 5, 5)
    conv(x).square().sum().backward()
    shared = conv.parametrizations.weight[0]

    plain = conv.weight.detach().clone().requires_grad_(True)
    nn.functional.conv2d(x, plain, conv.bias).square().sum().backward()
    assert plain.grad is not None
    expected = torch.zeros_like(centroids).index_add_(0, indices[indices >= 0], plain.grad[indices >= 0])
    assert torch.allclose(shared.centroids.grad, expected, atol=1e-5)
    assert conv.parametrizations.weight.original.grad is None


def test_fake_quant_passes_gradients_straight_through() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3)
    parametrize.register_parametrization(conv, "weight", FakeQuant(3, per_channel=True))
    quantized = conv.weight.detach()
    assert torch.equal(quantized, uniform(conv.parametrizations.weight.original, 3, per_channel=True)[0])
    x = torch.randn(1, 2, 5, 5)
    conv(x).square().sum().backward()

    plain = quantized.clone().requires_grad_(True)
    nn.functional.conv2d(x, plain, conv.bias).square().sum().backward()
    assert torch.allclose(conv.parametrizations.weight.original.grad, plain.grad)


def test_shared_weights_stay_shared_through_fine_tuning() -> None:
    model = _model()
    apply_masks(model, magnitude_masks(model, 0.3))
    tables = share_weights(model, bits=2)
    assert set(tables) == {"0", "2.vertical", "2.horizontal"}
    assert all(t["kind"] == "kmeans" and t["bits"] == 2 and len(t["centroids"]) <= 4 for t in tables.values())
    _fine_tune(model)
    tuned = {
        name: layer.parametrizations.weight[-1].centroids.detach().tolist()
        for name, layer in prunable_weights(model).items()
    }
    finalize(model)
    assert constrained_layers(model) == {}
    codebooks = codebook_table(model)
    for name, layer in prunable_weights(model).items():
        distinct = set(layer.weight[layer.weight != 0].tolist())
        assert len(distinct) <= 4
        assert distinct <= set(tuned[name]) and codebooks[name]["centroids"] == sorted(distinct)
        assert codebooks[name]["zeros"] >= 1
    assert tuned["0"] != tables["0"]["centroids"]


def test_uniform_quantization_survives_fine_tuning() -> None:
    model = _model()
    tables = quantize_uniform(model, bits=3, per_channel=False, layers=["0", "2.horizontal"])
    assert set(tables) == {"0", "2.horizontal"} and len(tables["0"]["scale"]) == 1
    _fine_tune(model)
    finalize(model)
    for name in tables:
        weight = model.get_submodule(name).weight.detach()
        assert len(codebook_table(model, [name])[name]["centroids"]) <= 6
        steps = weight / (weight.abs().max() / 3)
        assert torch.allclose(steps, steps.round(), atol=1e-5)


def test_quantizing_twice_or_a_non_layer_is_refused() -> None:
    model = _model()
    share_weights(model, bits=1, layers=["0"])
    with pytest.raises(NnslimError, match="0 is already quantized"):
        quantize_uniform(model, 4, per_channel=True, layers=["0"])
    with pytest.raises(NnslimError, match="'1' is not a Conv2d or Linear"):
        share_weights(model, bits=2, layers=["1"])
    with pytest.raises(NnslimError, match="weight sharing takes 1 to 16 bits"):
        share_weights(model, bits=0)
