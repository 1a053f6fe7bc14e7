from pathlib import Path

import pytest

from nnslim.compress import recipe as recipes
from nnslim.errors import NnslimError


def test_named_recipes_compose() -> None:
    assert [recipes.kind_of(s) for s in recipes.FULL.stages] == ["iterate", "lowrank", "quantize"]
    assert recipes.load("bbc") is recipes.BBC
    assert [recipes.kind_of(s) for s in recipes.load("deep-compression").stages] == ["prune", "quantize"]


def test_a_toml_recipe_loads_with_nested_settings(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\n'
        "[[stage]]\n"
        'kind = "iterate"\n'
        "rounds = 3\n"
        "[stage.finetune]\n"
        "steps = 50\n"
        "[[stage]]\n"
        'kind = "lowrank"\n'
        'layers = ["body.2", "body.4"]\n'
        "ranks = [32, 24]\n"
    )
    loaded = recipes.load(str(path))
    assert loaded.name == "mine"
    assert loaded.stages[0] == recipes.Iterate(rounds=3, finetune=recipes.FineTune(steps=50))
    assert loaded.stages[1] == recipes.LowRank(layers=("body.2", "body.4"), ranks=(32, 24))


def test_a_recipe_round_trips_through_its_dictionary() -> None:
    assert recipes.from_dict(recipes.FULL.to_dict()) == recipes.FULL


def test_a_recipe_names_its_objective_and_runtime(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text('objective = "speed"\nruntime = "onnxruntime_int8"\n[[stage]]\nkind = "iterate"\n')
    loaded = recipes.load(str(path))
    assert (loaded.objective, loaded.runtime) == ("speed", "onnxruntime_int8")
    assert (recipes.BBC.objective, recipes.BBC.runtime) == ("size", "torch")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[stage]]\nkind = "magic"\n', "kind must be one of"),
        ('[[stage]]\nkind = "iterate"\nspeed = 3\n', "unknown field"),
        ('name = "empty"\n', "at least one"),
        ('[[stage]]\nkind = "iterate"\nranking = "best"\n', "ranking must be"),
        ("[[stage]\n", "not a TOML recipe"),
        ('objective = "beauty"\n[[stage]]\nkind = "iterate"\n', "objective is one of size, speed"),
    ],
)
def test_bad_recipes_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(NnslimError, match=message):
        recipes.load(str(path))


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(NnslimError, match="unknown recipe"):
        recipes.load("tiny")
