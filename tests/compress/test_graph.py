import pytest
import torch

from nnslim.compress.graph import example_input, trace
from nnslim.compress.surgery import remove_units
from nnslim.errors import NnslimError
from nnslim.models.filters import ArchSpec, build, parameter_count
from tests.compress.user_filter import SMALL_ARCHS, USER


def _model(name: str, **extra: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(ArchSpec(name, {**SMALL_ARCHS[name], **extra}))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


@pytest.mark.parametrize("name", list(SMALL_ARCHS))
def test_removing_half_the_units_gives_a_smaller_network_that_runs(name: str) -> None:
    model = _model(name)
    graph = trace(model)
    units = graph.units()
    slim = remove_units(model, graph, units[::2])
    out = slim(*example_input(slim))
    assert out.shape == (1, 1, 32, 32)
    assert parameter_count(slim) < 0.6 * parameter_count(model)
    assert len(trace(slim).units()) == len(units) - len(units[::2])


@pytest.mark.parametrize("name", list(SMALL_ARCHS))
def test_units_nobody_reads_are_removed_exactly(name: str) -> None:
    model = _model(name)
    graph = trace(model)
    chosen = graph.units()[1::3]
    with torch.no_grad():
        for unit in chosen:
            for layer, indices in graph.consumers(unit):
                module = model.get_submodule(layer)
                first = getattr(module, "vertical", module)
                first.weight[:, indices] = 0
    slim = remove_units(model, graph, chosen)
    x = example_input(model)
    with torch.no_grad():
        torch.testing.assert_close(slim(*x), model(*x), atol=1e-4, rtol=1e-5)


def test_pixelshuffle_groups_are_one_unit() -> None:
    model = _model(USER)
    graph = trace(model)
    assert len(graph.groups()["expand"]) == 8  # 32 channels shuffled into 8
    slim = remove_units(model, graph, graph.groups()["expand"][:2])
    assert (slim.expand.out_channels, slim.refine.in_channels) == (24, 6)


def test_residual_and_attention_channels_are_coupled() -> None:
    graph = trace(_model("inloop"))
    groups = graph.groups()
    assert set(groups) == {"head", "blocks.0.conv1", "blocks.0.attention.squeeze", "blocks.1.conv1",
                           "blocks.1.attention.squeeze"}  # fmt: skip
    stream = groups["head"][0]
    readers = {name for name, _ in graph.consumers(stream)}
    assert {"blocks.0.conv1", "blocks.1.attention.squeeze", "tail"} <= readers


def test_qp_input_and_output_channels_are_fixed() -> None:
    model = _model("postfilter", qp_input=True)
    graph = trace(model)
    assert all(u not in graph.fixed for u in graph.units())
    assert len(graph.units()) == 16 * 3
    with pytest.raises(NnslimError, match="input or output"):
        remove_units(model, graph, [next(iter(graph.fixed))])


def test_an_unsupported_layer_is_refused_by_name() -> None:
    with pytest.raises(NnslimError, match=r"'norm' \(GroupNorm\)"):
        trace(build(ArchSpec(USER.replace(":make", ":WithLayerNorm"))))


def test_emptying_a_layer_is_refused() -> None:
    model = _model("postfilter")
    graph = trace(model)
    with pytest.raises(NnslimError, match="with none"):
        remove_units(model, graph, graph.groups()["body.0"])
