import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.compress import recipe as recipes
from nnslim.compress.schedule import Context, Run, apply_sparsity, is_identity, output_layers
from nnslim.compress.sparsity import MAX_LAYER_SPARSITY, prunable_weights
from nnslim.errors import NnslimError
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec, build, parameter_count
from nnslim.models.train import TrainConfig, load_filter, save_filter
from tests.compress.user_filter import SMALL_ARCHS, USER

TINY = recipes.FineTune(steps=2, batch=2, patch=16)


def _pairs(name: str, seed: int) -> LumaPairs:
    rng = np.random.default_rng(seed)
    original = rng.integers(0, 256, (2, 32, 32), dtype=np.uint8)
    noise = rng.integers(-6, 7, original.shape)
    return LumaPairs(name, 37, np.clip(original + noise, 0, 255).astype(np.uint8), original, 10.0)


def _tiny(recipe: recipes.Recipe) -> recipes.Recipe:
    stages = []
    for stage in recipe.stages:
        stage = dataclasses.replace(stage, finetune=TINY)
        if isinstance(stage, recipes.Iterate):
            stage = dataclasses.replace(stage, rounds=2, fraction=0.5, round_to=2, minimum=2)
        stages.append(stage)
    return recipes.Recipe(recipe.name, tuple(stages))


def _setup(tmp_path: Path, arch: str, max_loss: float = 100.0, full_size: bool = False) -> tuple[Path, Context]:
    torch.manual_seed(0)
    spec = ArchSpec(arch, {} if full_size else SMALL_ARCHS[arch])
    model = build(spec)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    base = TrainConfig(arch=spec, steps=2, train_sequences=("A",), validation_sequences=("B",))
    original = tmp_path / "original.pt"
    save_filter(model, original, {"format": "nnslim-filter", "arch": spec.to_dict(), "training": base.to_dict()})
    ctx = Context([_pairs("A", 0)], [_pairs("B", 1)], [_pairs("C", 2)], base, max_loss, frame_timing=False)
    return original, ctx


@pytest.mark.parametrize("arch", list(SMALL_ARCHS))
@pytest.mark.parametrize("name", list(recipes.NAMED))
def test_every_recipe_runs_on_every_architecture(tmp_path: Path, arch: str, name: str) -> None:
    original, ctx = _setup(tmp_path, arch)
    model, steps, quantization = Run(original, _tiny(recipes.NAMED[name]), ctx, tmp_path / "out", print, USER).run()
    out = model(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32)
    assert steps[0]["kind"] == "original" and len(steps) >= 2
    if name in ("bbc", "full"):
        assert parameter_count(model) < steps[0]["parameters"]
    if name == "deep-compression":
        assert quantization and all(len(t["centroids"]) <= 32 for t in quantization.values())
    save_filter(model, tmp_path / "slim.pt", load_filter(original, USER)[1])
    rebuilt, _ = load_filter(tmp_path / "slim.pt", USER)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model.eval()(x))


@pytest.mark.parametrize("arch", ["postfilter", "vrcnn", "inloop"])
@pytest.mark.parametrize("name", list(recipes.NAMED))
def test_every_recipe_runs_on_the_full_size_architectures(tmp_path: Path, arch: str, name: str) -> None:
    original, ctx = _setup(tmp_path, arch, full_size=True)
    recipe = recipes.Recipe(
        name,
        tuple(
            dataclasses.replace(s, finetune=TINY, **({"rounds": 1} if isinstance(s, recipes.Iterate) else {}))
            for s in recipes.NAMED[name].stages
        ),
    )
    model, steps, _ = Run(original, recipe, ctx, tmp_path / "out", print).run()
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)
    if name in ("bbc", "full"):
        assert parameter_count(model) < steps[0]["parameters"]


@pytest.mark.parametrize("name", ["bbc", "full"])
def test_an_interrupted_run_resumes_after_its_last_step(tmp_path: Path, name: str) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    recipe = _tiny(recipes.NAMED[name])
    _, first, _ = Run(original, recipe, ctx, tmp_path / "out", print).run()
    logged: list[str] = []
    _, again, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    assert again == first
    assert any("resuming" in line for line in logged)
    other = recipes.Recipe("bbc", (dataclasses.replace(recipe.stages[0], rounds=3),))
    with pytest.raises(NnslimError, match="other settings"):
        Run(original, other, ctx, tmp_path / "out", print).run()


def test_the_loop_keeps_the_best_model_within_the_budget(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter", max_loss=0.0)
    model, steps, _ = Run(original, _tiny(recipes.BBC), ctx, tmp_path / "out", print).run()
    over = [s for s in steps if not s["within_budget"]]
    if over:
        assert (
            steps[-1]["kept"]
            == max((i for i, s in enumerate(steps) if s["within_budget"]), key=lambda i: -steps[i]["parameters"])
            or parameter_count(model) == steps[steps[-1]["kept"]]["parameters"]
        )


def _zero_started_user_filter(tmp_path: Path) -> tuple[Path, Context]:
    """The user-style filter (BatchNorm, PixelShuffle) with its output layer at zero, as residual filters start."""
    original, ctx = _setup(tmp_path, USER)
    model, meta = load_filter(original, USER)
    with torch.no_grad():
        model.tail.weight.mul_(1e-4)  # a short training leaves the output layer's weights the smallest
    save_filter(model, original, meta)
    return original, ctx


def test_output_layers_are_the_ones_that_write_the_output() -> None:
    assert output_layers(build(ArchSpec(USER, {}))) == ["tail"]
    assert output_layers(build(ArchSpec("inloop", SMALL_ARCHS["inloop"]))) == ["tail"]
    assert output_layers(build(ArchSpec("postfilter", SMALL_ARCHS["postfilter"]))) == ["body.6"]


def test_sparsity_never_empties_the_output_layer_nor_any_layer(tmp_path: Path) -> None:
    original, _ = _zero_started_user_filter(tmp_path)
    model, _ = load_filter(original, USER)
    apply_sparsity(model, 0.9, "global", prune_output=False)
    assert bool((model.tail.weight != 0).all())
    for name, layer in prunable_weights(model).items():
        assert (layer.weight == 0).float().mean().item() <= MAX_LAYER_SPARSITY + 1e-6, name
    model, _ = load_filter(original, USER)
    apply_sparsity(model, 0.9, "global", prune_output=True)
    assert 0 < (model.tail.weight != 0).sum() <= round(model.tail.weight.numel() * (1 - MAX_LAYER_SPARSITY)) + 1


def test_a_bbc_round_keeps_the_zero_started_filter_alive(tmp_path: Path) -> None:
    original, ctx = _zero_started_user_filter(tmp_path)
    recipe = recipes.Recipe("bbc", (recipes.Iterate(rounds=1, sparsity=0.9, fraction=0.25, round_to=2, finetune=TINY),))
    model, steps, _ = Run(original, recipe, ctx, tmp_path / "out", print, USER).run()
    assert not any(s["identity"] for s in steps)
    assert bool((model.tail.weight != 0).any())


def test_a_collapsed_filter_is_reported_as_the_identity(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, USER)
    model, _ = load_filter(original, USER)
    assert not is_identity(model, ctx)
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
    assert is_identity(model, ctx)
