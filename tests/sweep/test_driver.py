import json
from pathlib import Path

from nnslim.cli import main
from tests.conftest import make_folder_with_validation

FIGURES = ("bytes", "parameters", "kmac_per_pixel", "loss_db")


def _tiny_sweep(tmp_path: Path) -> Path:
    """A sweep file of four points on a tiny trained filter: two split ranks, each at a good and an impossible QP."""
    folder = make_folder_with_validation(tmp_path)
    model = tmp_path / "tiny.pt"
    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 8, "layers": 3}', "--validation", "TinyVal"]
    argv = [*train, "--sequences", str(folder), "--steps", "2", "--batch", "2", "--patch", "32", "--out", str(model)]
    assert main(argv) == 0
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'[sweep]\nmodels = ["{model}"]\nsequences = "{folder}"\nmax_size = "128x64"\nframes = 2\nbudgets = [1.0]\n'
        "[space]\nenergy = [1.0, 0.6]\nnnr_qp = [-32, 500]\n"
    )
    return path


def _sweep(path: Path, out: Path, *extra: str) -> dict:
    assert main(["sweep", str(path), "--out", str(out), *extra, "--json", str(out.with_suffix(".json"))]) == 0
    return json.loads(out.with_suffix(".json").read_text())


def test_a_tiny_sweep_gives_the_same_figures_locally_and_on_ray_and_resumes(tmp_path: Path) -> None:
    path = _tiny_sweep(tmp_path)
    local = _sweep(path, tmp_path / "local")
    assert local["points"] == 4 and local["finished"] == 2 and local["ran"] == 4
    assert len(local["failed"]) == 2 and all("qp must be in -128..127" in f["error"] for f in local["failed"])
    assert len({r["parameters"] for r in local["rows"]}) == 2
    assert local["front"] and local["best"][0]["row"] is not None
    assert "<h2>Pareto front</h2>" in (tmp_path / "local" / "report" / "index.html").read_text()
    assert (tmp_path / "local" / "pareto.png").stat().st_size > 0

    ray = _sweep(path, tmp_path / "ray", "--ray", "local")
    by_key = {r["key"]: r for r in ray["rows"]}
    for row in local["rows"]:
        assert {k: by_key[row["key"]][k] for k in FIGURES} == {k: row[k] for k in FIGURES}
    for row in ray["rows"]:
        packed = tmp_path / "ray" / "points" / f"{row['key']}.nnsl"
        assert packed.stat().st_size == row["bytes"]

    (tmp_path / "local" / "points" / f"{local['rows'][0]['key']}.json").unlink()
    again = _sweep(path, tmp_path / "local")
    assert again["ran"] == 1 and again["skipped"] == 3
    assert [r["key"] for r in again["rows"]] == [r["key"] for r in local["rows"]]
    retried = _sweep(path, tmp_path / "local", "--retry-failed")
    assert retried["ran"] == 2 and len(retried["failed"]) == 2
