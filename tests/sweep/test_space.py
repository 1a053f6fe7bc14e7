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
        "[space]\nfraction = [0.0, 0.5]\nenergy = [1.0, 0.9, 0.8]\nnnr_qp = -24\n",
    )
    config = space.load(path)
    assert config.budgets == (0.05, 0.1) and config.space["nnr_qp"] == (-24,)
    chosen = space.points(config, {"a.pt": ("x265", 37)})
    assert len(chosen) == 6 and {p.codec for p in chosen} == {"x265"} and {p.qp for p in chosen} == {37}
    assert len({p.key() for p in chosen}) == 6
    assert all(p.knobs.nnr_qp == -24 for p in chosen)


def test_random_sampling_draws_distinct_points_the_same_way_each_time(tmp_path: Path) -> None:
    text = '[sweep]\nmodels = ["a.pt"]\nsampler = "random"\nsamples = 5\nseed = 3\n[space]\nbits = [4, 5, 6, 7, 8]\n'
    text += "nnr_qp = [-40, -32, -24, -16]\n"
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
        ('[sweep]\nmodels = ["a.pt"]\n[space]\nmethod = ["ternary"]\n', "method must be"),
        ('[sweep]\nmodels = ["a.pt"]\n[space]\nnnr_qp = [-32]\ncoder_qp = [-24]\n', "both coder_qp and nnr_qp"),
        ("[sweep\n", "not a readable sweep file"),
    ],
)
def test_bad_sweep_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(NnslimError, match=message.replace("[", r"\[")):
        space.knob_settings(space.load(_write(tmp_path, text)))


def test_knobs_become_a_recipe_in_a_fixed_order() -> None:
    assert space.recipe_for(Knobs()).stages == ()
    stages = space.recipe_for(Knobs(sparsity=0.3, fraction=0.25, energy=0.9, method="kmeans", bits=5)).stages
    assert [type(s) for s in stages] == [Iterate, LowRank, Quantize]
    assert stages[0].fraction == 0.25 and stages[0].sparsity == 0.3 and stages[2].bits == 5
    (prune,) = space.recipe_for(Knobs(sparsity=0.5)).stages
    assert isinstance(prune, Prune) and prune.sparsity == 0.5
    assert space.pack_config(Knobs(coder="huffman", bits=5)).coder == "huffman"


def test_old_knob_names_are_read_with_a_warning_and_written_beside_the_new(tmp_path: Path) -> None:
    old = '[sweep]\nmodels = ["a.pt"]\n[space]\nactivation = [0.5]\nquantizer = ["uniform"]\ncoder_qp = [-24]\n'
    new = '[sweep]\nmodels = ["a.pt"]\n[space]\nfraction = [0.5]\nmethod = ["uniform"]\nnnr_qp = [-24]\n'
    with pytest.warns(DeprecationWarning, match="coder_qp is deprecated; it is now nnr_qp"):
        renamed = space.points(space.load(_write(tmp_path, old)), {"a.pt": ("x265", 37)})
    (point,) = space.points(space.load(_write(tmp_path, new)), {"a.pt": ("x265", 37)})
    assert [p.key() for p in renamed] == [point.key()]
    knobs = point.to_dict()["knobs"]
    assert knobs["nnr_qp"] == knobs["coder_qp"] == -24 and knobs["method"] == knobs["quantizer"] == "uniform"
    assert knobs["fraction"] == knobs["activation"] == 0.5
