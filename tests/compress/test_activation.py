import copy

import pytest
import torch

from nnslim.compress import activation
from nnslim.compress.graph import trace
from nnslim.compress.surgery import remove_units
from nnslim.errors import NnslimError
from nnslim.models.filters import ArchSpec, build


def _postfilter() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(ArchSpec("postfilter", {"channels": 16, "layers": 4}))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model.eval()


def _calibrated(model: torch.nn.Module) -> tuple:
    graph = trace(model)
    batches = [(torch.rand(2, 1, 24, 24),) for _ in range(3)]
    return graph, activation.calibrate(model, graph, batches)


def _without_dead(model: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """The model with its dead units folded and removed, and how many there were."""
    graph, stats = _calibrated(model)
    dead = activation.dead_units(model, graph, stats)
    slim = copy.deepcopy(model)
    activation.fold_constants(slim, graph, stats, dead)
    return remove_units(slim, graph, dead), len(dead)


def test_dead_channels_are_removed_without_changing_the_output() -> None:
    model = _postfilter()
    with torch.no_grad():
        model.body[0].bias[3] = -100.0  # always zero after the ReLU
        model.body[4].weight[:, 5] = 0  # channel 5 of body.2 is read by nobody
    slim, dead = _without_dead(model)
    assert dead == 2
    assert slim.body[0].out_channels == 15 and slim.body[2].out_channels == 15
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(slim(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_constant_channel_is_folded_into_the_next_bias() -> None:
    model = _postfilter()
    with torch.no_grad():
        model.body[2].weight[7] = 0
        model.body[2].bias[7] = 0.5  # constant 0.5 after the ReLU
    slim, dead = _without_dead(model)
    assert dead == 1
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        difference = (slim(x) - model(x)).abs()
    # Exact away from the frame edge, where zero padding made the contribution position-dependent.
    assert float(difference[..., 3:-3, 3:-3].max()) < 1e-5


def test_lowest_keeps_multiples_and_a_minimum() -> None:
    model = build(ArchSpec("postfilter", {"channels": 32, "layers": 4}))
    graph, stats = _calibrated(model)
    scores = activation.scores(model, graph, stats)
    removed = set(activation.lowest(graph, scores, 0.6, round_to=8, minimum=8))
    for units in graph.groups().values():
        kept = len(units) - len(removed & set(units))
        assert kept % 8 == 0 and kept >= 8
    assert removed <= set(sorted(scores, key=scores.__getitem__)[: len(removed) + 3 * 8])


@pytest.mark.parametrize("fraction", [0.0, 0.5])
def test_scores_cover_every_unit(fraction: float) -> None:
    model = _postfilter()
    graph, stats = _calibrated(model)
    scores = activation.scores(model, graph, stats)
    assert set(scores) == set(graph.units())
    assert all(v >= 0 for v in scores.values())
    assert len(activation.lowest(graph, scores, fraction, round_to=1, minimum=1)) == round(fraction * 48)


def test_group_ranking_shrinks_every_group_including_the_residual_stream() -> None:
    model = build(ArchSpec("inloop", {"channels": 16, "blocks": 3}))
    graph, stats = _calibrated(model)
    scores = activation.scores(model, graph, stats)
    removed = set(activation.lowest(graph, scores, 0.5, round_to=1, minimum=1, ranking="group"))
    for units in graph.groups().values():
        assert len(removed & set(units)) == round(0.5 * len(units))
    stream = graph.groups()["head"]
    assert removed & set(stream) == set(sorted(stream, key=scores.__getitem__)[: len(stream) // 2])
    slim = remove_units(model, graph, sorted(removed))
    assert slim.head.out_channels == 8 and slim(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_unknown_ranking_is_refused() -> None:
    model = _postfilter()
    graph, stats = _calibrated(model)
    with pytest.raises(NnslimError, match="ranking"):
        activation.lowest(graph, activation.scores(model, graph, stats), 0.5, ranking="best")
