from pathlib import Path

import pytest

from nnslim.compress.recipe import Iterate, LowRank, Prune, Quantize
from nnslim.errors import NnslimError
from nnslim.sweep import space
from nnslim.sweep.space import Knobs


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def test_a_sweep_file_loads_and_its_grid_covers_every_combination(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[sweep]\nmodels = ["a.pt"]\nbudgets = [0.05, 0.1]\n'
        "[space]\nactivation = [0.0, 0.5]\nenergy = [1.0, 0.9, 0.8]\ncoder_qp = -24\n",
    )
    config = space.load(path)
    assert config.budgets == (0.05, 0.1) and config.space["coder_qp"] == (-24,)
    chosen = space.points(config, {"a.pt": ("x265", 37)})
    assert len(chosen) == 6 and {p.codec for p in chosen} == {"x265"} and {p.qp for p in chosen} == {37}
    assert len({p.key() for p in chosen}) == 6
    assert all(p.knobs.coder_qp == -24 for p in chosen)


def test_random_sampling_draws_distinct_points_the_same_way_each_time(tmp_path: Path) -> None:
    text = '[sweep]\nmodels = ["a.pt"]\nsampler = "random"\nsamples = 5\nseed = 3\n[space]\nbits = [4, 5, 6, 7, 8]\n'
    text += "coder_qp = [-40, -32, -24, -16]\n"
    config = space.load(_write(tmp_path, text))
    first = space.knob_settings(config)
    assert len(first) == 5 and len(set(first)) == 5
    assert first == space.knob_settings(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sweep]\nmodels = ["a.pt"]\n[space]\ncolour = [1]\n', "unknown knob"),
        ('[sweep]\nmodels = ["a.pt"]\nsplit = "train"\n', "use test"),
        ('[sweep]\nmodels = ["a.pt"]\nobjectives = ["vmaf"]\n', "objectives"),
        ("[sweep]\nmodels = []\n", "at least one filter"),
        ('[sweep]\nmodels = ["a.pt"]\nspeed = 1\n', "unknown [sweep] field"),
        ('[sweep]\nmodels = ["a.pt"]\n[space]\nquantizer = ["ternary"]\n', "quantizer must be"),
        ("[sweep\n", "not a readable sweep file"),
    ],
)
def test_bad_sweep_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(NnslimError, match=message.replace("[", r"\[")):
        space.knob_settings(space.load(_write(tmp_path, text)))


def test_knobs_become_a_recipe_in_a_fixed_order() -> None:
    assert space.recipe_for(Knobs()).stages == ()
    stages = space.recipe_for(Knobs(sparsity=0.3, activation=0.25, energy=0.9, quantizer="kmeans", bits=5)).stages
    assert [type(s) for s in stages] == [Iterate, LowRank, Quantize]
    assert stages[0].fraction == 0.25 and stages[0].sparsity == 0.3 and stages[2].bits == 5
    (prune,) = space.recipe_for(Knobs(sparsity=0.5)).stages
    assert isinstance(prune, Prune) and prune.sparsity == 0.5
    assert space.pack_config(Knobs(coder="huffman", bits=5)).coder == "huffman"
