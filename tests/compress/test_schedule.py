import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.compress import recipe as recipes
from nnslim.compress.context import Speed
from nnslim.compress.schedule import Context, Run, is_identity
from nnslim.compress.sparsity import MAX_LAYER_SPARSITY, prunable_weights
from nnslim.compress.stages import HANDLERS, Progress, StepOutcome, handler_for
from nnslim.compress.stages.common import apply_sparsity, output_layers
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import interleaved_frames
from nnslim.models.apply import torch_runner
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec, build, kmac_per_pixel, parameter_count
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
    ctx = Context([_pairs("A", 0)], [_pairs("B", 1)], [_pairs("C", 2)], base, max_loss)
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


@pytest.mark.parametrize("name", ["bbc", "full", "deep-compression"])
def test_an_interrupted_run_resumes_after_its_last_step(tmp_path: Path, name: str) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    recipe = _tiny(recipes.NAMED[name])
    _, first, quantization = Run(original, recipe, ctx, tmp_path / "out", print).run()
    logged: list[str] = []
    _, again, requantization = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    assert again == first
    assert requantization == quantization
    assert bool(quantization) == (name != "bbc")
    assert any("resuming" in line for line in logged)
    other = recipes.Recipe(name, (dataclasses.replace(recipe.stages[0], finetune=dataclasses.replace(TINY, steps=3)),))
    with pytest.raises(NnslimError, match="other settings"):
        Run(original, other, ctx, tmp_path / "out", print).run()


def test_the_loop_keeps_the_best_model_within_the_budget(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter", max_loss=0.0)
    model, steps, _ = Run(original, _tiny(recipes.BBC), ctx, tmp_path / "out", print).run()
    assert all(s["outcome"] == ("kept" if s["within_budget"] else "dropped") for s in steps)
    assert [s["outcome"] for s in steps].count("dropped") <= 1 and steps[-1]["done"]
    kept = steps[-1]["kept"]
    assert steps[kept]["within_budget"] and parameter_count(model) == steps[kept]["parameters"]


EXACT = recipes.FineTune(steps=0)  # no retraining: a step's loss depends on its settings alone


def _loss(tmp_path: Path, original: Path, ctx: Context, stage: recipes.Stage) -> float:
    """The validation loss of one stage, run with a budget it cannot overshoot."""
    out = tmp_path / f"probe{len(list(tmp_path.glob('probe*')))}"
    ctx = dataclasses.replace(ctx, max_loss=100.0)
    _, steps, _ = Run(original, recipes.Recipe("probe", (stage,)), ctx, out, print).run()
    return float(steps[-1]["loss_db"])


def test_a_prune_stage_over_the_budget_is_retried_more_gently(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    stage = recipes.Prune(sparsity=0.4, finetune=EXACT)
    harsh, gentle = _loss(tmp_path, original, ctx, stage), _loss(tmp_path, original, ctx, stage.gentler())
    assert gentle < harsh
    ctx = dataclasses.replace(ctx, max_loss=(harsh + gentle) / 2)
    logged: list[str] = []
    model, steps, _ = Run(original, recipes.Recipe("p", (stage,)), ctx, tmp_path / "out", logged.append).run()
    first, second = steps[1:]
    assert (first["outcome"], first["attempt"], first["done"], first["kept"]) == ("retried", 1, False, 0)
    assert (second["outcome"], second["attempt"], second["done"], second["kept"]) == ("kept", 2, True, 2)
    assert first["adjusted"] == {} and second["adjusted"] == {"sparsity": 0.2}
    assert not first["within_budget"] and second["within_budget"]
    assert "retrying more gently (sparsity 0.2)" in logged[1] and "attempt 2" in logged[2]
    assert parameter_count(model) == second["parameters"]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_stage_that_cannot_meet_the_budget_is_dropped(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter", max_loss=0.0)
    recipe = recipes.Recipe("p", (recipes.Prune(sparsity=0.4, finetune=EXACT),))
    logged: list[str] = []
    model, steps, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    assert [(s["outcome"], s["attempt"], s["done"], s["kept"]) for s in steps[1:]] == [
        ("retried", 1, False, 0), ("retried", 2, False, 0), ("dropped", 3, True, 0),
    ]  # fmt: skip
    assert [s["adjusted"].get("sparsity") for s in steps[1:]] == [None, 0.2, 0.1]
    assert "stage dropped; keeping step 0" in logged[-1]
    before = _state(load_filter(original)[0])
    assert all(torch.equal(before[k], v) for k, v in _state(model).items())


class _Interrupted(Exception):
    pass


def _interrupt_at(text: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        if text in line:
            raise _Interrupted(line)

    return log


def test_a_run_interrupted_during_retries_resumes_at_the_next_attempt(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter", max_loss=0.0)
    recipe = recipes.Recipe("p", (recipes.Prune(sparsity=0.4, finetune=EXACT),))
    _, reference, _ = Run(original, recipe, ctx, tmp_path / "reference", print).run()
    with pytest.raises(_Interrupted):
        Run(original, recipe, ctx, tmp_path / "out", _interrupt_at("attempt 2")).run()
    logged: list[str] = []
    model, steps, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    assert logged[0] == "resuming after step 2"
    assert "attempt 3" in logged[1] and len(logged) == 2
    assert steps == reference
    before = _state(load_filter(original)[0])
    assert all(torch.equal(before[k], v) for k, v in _state(model).items())


def test_quantization_settings_survive_a_resume_after_a_retried_quantize(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    stage = recipes.Quantize(method="kmeans", bits=1, finetune=EXACT)
    harsh, gentle = _loss(tmp_path, original, ctx, stage), _loss(tmp_path, original, ctx, stage.gentler())
    ctx = dataclasses.replace(ctx, max_loss=max(0.0, (harsh + gentle) / 2))
    recipe = recipes.Recipe("q", (stage,))
    _, steps, quantization = Run(original, recipe, ctx, tmp_path / "out", print).run()
    assert quantization and {t["bits"] for t in quantization.values()} == {1 + steps[-1]["attempt"] - 1}
    _, _, resumed = Run(original, recipe, ctx, tmp_path / "out", print).run()
    assert resumed == quantization


def test_every_recipe_kind_has_a_handler() -> None:
    assert set(HANDLERS) == set(recipes.KINDS.values())
    assert all(handler_for(cls()) is HANDLERS[cls] for cls in recipes.KINDS.values())


@dataclasses.dataclass(frozen=True)
class _Scale:
    """A stage outside the recipe's kinds: scales every weight."""

    factor: float = 1.0
    finetune: recipes.FineTune = EXACT

    def gentler(self) -> "_Scale | None":
        return None


def _scale(model: torch.nn.Module, stage: _Scale, progress: Progress, ctx: Context) -> StepOutcome:
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(stage.factor)
    return StepOutcome(model, {"factor": stage.factor})


def test_an_unknown_stage_type_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NnslimError, match="no handler for the stage type object"):
        handler_for(object())
    original, ctx = _setup(tmp_path, "postfilter")
    recipe = recipes.Recipe("s", (_Scale(),))  # type: ignore[arg-type]
    with pytest.raises(NnslimError, match="_Scale is not a recipe stage"):
        Run(original, recipe, ctx, tmp_path / "out", print)
    monkeypatch.setitem(recipes.KINDS, "scale", _Scale)
    with pytest.raises(NnslimError, match="no handler for the stage type _Scale"):
        Run(original, recipe, ctx, tmp_path / "out", print).run()
    monkeypatch.setitem(HANDLERS, _Scale, _scale)  # adding a stage: its handler and one line
    _, steps, _ = Run(original, recipe, ctx, tmp_path / "out", print).run()
    assert (steps[-1]["kind"], steps[-1]["factor"], steps[-1]["outcome"]) == ("scale", 1.0, "kept")


def _timed_on_small_frames(calls: list[int]) -> Speed:
    """Real PyTorch timing, in turns, on 64x64 frames (``calls`` counts the models timed per call)."""

    def frames(models: Sequence[torch.nn.Module]) -> list[tuple[float, float]]:
        calls.append(len(models))
        runners = {str(i): torch_runner(m.eval(), 37) for i, m in enumerate(models)}
        timing = interleaved_frames(runners, width=64, height=64, threads=1)
        return [(timing[str(i)]["median_ms"], timing[str(i)]["min_ms"]) for i in range(len(models))]

    return Speed("torch", frames, lambda layers, shape: [1.0] * len(layers))


def test_each_step_is_timed_in_turns_with_the_model_before_it(tmp_path: Path) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    calls: list[int] = []
    ctx = dataclasses.replace(ctx, speed=_timed_on_small_frames(calls))
    recipe = recipes.Recipe("p", (recipes.Prune(finetune=EXACT),))
    logged: list[str] = []
    _, steps, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    assert calls == [1, 2]  # the original alone, then the step with the model before it
    assert steps[0]["ms_before"] is None and steps[1]["ms_before"] > 0
    assert 0 < steps[1]["fastest_ms"] <= steps[1]["ms_per_1080p"]
    assert "ms per 1080p frame (step before:" in logged[-1] and "torch)" in logged[-1]


def _by_macs(layer_faster: bool, fewer_macs_faster: bool = True) -> Speed:
    """A cost model, not a clock, so that the rules are tested deterministically: a filter's time is its kMAC per
    pixel (or, with ``fewer_macs_faster`` False, its inverse, as small odd channel counts can run slower in int8),
    and a low-rank pair is faster than its kernel only if ``layer_faster``."""
    return Speed(
        "torch",
        lambda models: [(kmac_per_pixel(m) ** (1 if fewer_macs_faster else -1),) * 2 for m in models],
        lambda layers, shape: [1.0, 0.5 if layer_faster else 2.0][: len(layers)],
    )


def test_under_the_speed_objective_a_step_that_reshapes_the_network_and_runs_slower_is_dropped(
    tmp_path: Path,
) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    recipe = recipes.Recipe("p", (_tiny(recipes.BBC).stages[0], recipes.Prune(finetune=EXACT)), objective="speed")
    logged: list[str] = []
    ctx = dataclasses.replace(ctx, speed=_by_macs(True, fewer_macs_faster=False), objective="speed")
    model, steps, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    removed = next(s for s in steps if s["kind"] == "iterate")
    assert removed["within_budget"] and removed["outcome"] == "dropped"
    assert any("slower in torch (objective speed): stage dropped; keeping step 0" in line for line in logged)
    assert next(s for s in steps if s["kind"] == "prune")["outcome"] == "kept"  # same shapes: not judged by time
    assert kmac_per_pixel(model) == steps[0]["kmac_per_pixel"]
    ctx = dataclasses.replace(ctx, speed=_by_macs(True), objective="speed")
    _, steps, _ = Run(original, recipe, ctx, tmp_path / "faster", print).run()
    assert next(s for s in steps if s["kind"] == "iterate")["outcome"] == "kept"
    size_ctx = dataclasses.replace(ctx, speed=_by_macs(True, fewer_macs_faster=False), objective="size")
    _, steps, _ = Run(original, dataclasses.replace(recipe, objective="size"), size_ctx, tmp_path / "size", print).run()
    assert next(s for s in steps if s["kind"] == "iterate")["outcome"] == "kept"


@pytest.mark.parametrize("faster", [True, False])
def test_under_the_speed_objective_a_kernel_is_split_only_where_the_pair_is_faster(
    tmp_path: Path, faster: bool
) -> None:
    original, ctx = _setup(tmp_path, "postfilter")
    ctx = dataclasses.replace(ctx, speed=_by_macs(faster), objective="speed")
    recipe = recipes.Recipe("l", (recipes.LowRank(energy=0.5, finetune=EXACT),), objective="speed")
    logged: list[str] = []
    _, steps, _ = Run(original, recipe, ctx, tmp_path / "out", logged.append).run()
    timed = steps[1]["layer_ms"]
    assert timed and all(t["split"] == faster for t in timed.values())
    split = len(timed) if faster else 0
    assert f"{split} of {len(timed)} kernels split: those whose low-rank pair ran faster in torch" in logged[-1]
    assert (steps[1]["parameters"] < steps[0]["parameters"]) == faster


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
