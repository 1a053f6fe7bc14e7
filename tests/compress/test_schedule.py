import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.compress import recipe as recipes
from nnslim.compress.schedule import Context, Run
from nnslim.errors import NnslimError
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec, build, parameter_count
from nnslim.models.train import TrainConfig, load_filter, save_filter
from tests.compress.user_filter import SMALL_ARCHS

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
    model, steps, quantization = Run(original, _tiny(recipes.NAMED[name]), ctx, tmp_path / "out", print).run()
    out = model(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32)
    assert steps[0]["kind"] == "original" and len(steps) >= 2
    if name in ("bbc", "full"):
        assert parameter_count(model) < steps[0]["parameters"]
    if name == "deep-compression":
        assert quantization and all(len(t["centroids"]) <= 32 for t in quantization.values())
    save_filter(model, tmp_path / "slim.pt", load_filter(original)[1])
    rebuilt, _ = load_filter(tmp_path / "slim.pt")
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
