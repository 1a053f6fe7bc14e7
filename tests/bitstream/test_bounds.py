import pytest
import torch
from torch import nn

from nnslim.bitstream import bounds
from nnslim.bitstream.container import DEFAULT_LIMITS, BitstreamError, Limits
from nnslim.models import layers
from nnslim.models.filters import REGISTRY, ArchSpec, build, parameter_count


def _layers_with_parameters(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if any(True for _ in m.parameters(recurse=False)))


@pytest.mark.parametrize(
    "spec",
    [
        ArchSpec("postfilter"),
        ArchSpec("postfilter", {"channels": 8, "layers": 3, "qp_input": True}),
        ArchSpec("postfilter", {"channels": 5, "layers": 1}),
        ArchSpec("vrcnn", {"qp_input": True}),
        ArchSpec("inloop"),
        ArchSpec("inloop", {"channels": 6, "blocks": 0, "shuffle": False, "qp_input": True}),
        ArchSpec("inloop", {"channels": 12, "blocks": 3, "shuffle": True}),
    ],
)
def test_architecture_formulas_count_what_is_built(spec: ArchSpec) -> None:
    with torch.device("meta"):
        model = build(spec)
    parameters, count = bounds.ARCHITECTURES[spec.name](spec.kwargs, DEFAULT_LIMITS, spec.name)
    assert (parameters, count) == (parameter_count(model), _layers_with_parameters(model))


def test_every_built_in_architecture_is_bounded() -> None:
    assert set(bounds.ARCHITECTURES) == set(REGISTRY)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(6, 8, (3, 5), stride=2, padding=(1, 2), dilation=1, groups=2, bias=False, padding_mode="reflect"),
        nn.Conv2d(4, 4, 3, padding="same"),
        layers.SeparableConv2d(8, 3, 16, 5, 2, True),
        nn.Linear(10, 7),
        nn.BatchNorm2d(12),
        nn.BatchNorm2d(12, affine=False, track_running_stats=False),
        nn.PReLU(9),
    ],
)
def test_layer_table_counts_what_is_built(layer: nn.Module) -> None:
    spec = layers.describe(layer)
    assert spec is not None
    state = layers.create(spec).state_dict()
    assert bounds.layer_table({"x": spec}, DEFAULT_LIMITS) == sum(v.numel() for v in state.values())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 99}, "kernel_size must be"),
        ({"type": "Conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 4}, "groups do not"),
        ({"type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "device": "meta"}, "unknown"),
        ({"type": "Conv2d", "in_channels": True, "out_channels": 4, "kernel_size": 3}, "in_channels must be"),
        (
            {"type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": "same", "stride": 2},
            "same",
        ),
        ({"type": "BatchNorm2d", "num_features": 4, "eps": -1}, "eps must be"),
        ({"type": "Linear", "in_features": 4096, "out_features": 4096}, "the limit is 1000"),
        ({"type": "Sequential"}, "type must be one of"),
        ([1, 2], "type must be one of"),
    ],
)
def test_layer_table_refusals(spec: object, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        bounds.layer_table({"x": spec}, Limits(max_params=1000))


def test_layer_table_size_is_bounded_before_its_entries() -> None:
    table = {f"l{i}": {"type": "PReLU"} for i in range(DEFAULT_LIMITS.max_layers + 1)}
    with pytest.raises(BitstreamError, match="the limit is 1024"):
        bounds.layer_table(table, DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        (None, "missing or malformed 'arch'"),
        ({"name": "postfilter", "kwargs": {"channels": 1500}}, "101286001 parameters; the limit is 67108864"),
        ({"name": "inloop", "kwargs": {"blocks": 300}}, "1502 layers; the limit is 1024"),
        ({"name": "postfilter", "kwargs": {"qp_input": 1}}, "qp_input must be true or false"),
        ({"name": "postfilter", "kwargs": [1]}, "arguments are not an object"),
        ({"name": "x.py:f", "kwargs": {f"k{i}": i for i in range(40)}}, "arguments over the limit"),
    ],
)
def test_architecture_refusals(arch: object, message: str) -> None:
    with pytest.raises(BitstreamError, match=message):
        bounds.architecture(arch, DEFAULT_LIMITS)


def test_a_user_factory_is_not_counted_before_it_is_built() -> None:
    assert bounds.architecture({"name": "x.py:f", "kwargs": {"width": 10**9}}, DEFAULT_LIMITS).name == "x.py:f"
