"""nnslim adapt, then nnslim filter --update: the decoder gives what the encoder measured; hostile updates fail."""

import json
from pathlib import Path

import pytest

from nnslim.cli import main
from tests.conftest import make_folder_with_validation


def _fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def _filter(folder: Path, out: Path, seed: int) -> Path:
    args = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 4, "layers": 3}', "--validation", "TinyVal"]
    assert main([*args, "--sequences", str(folder), "--steps", "3", "--batch", "2", "--patch", "32",
                 "--seed", str(seed), "--out", str(out)]) == 0  # fmt: skip
    return out


def test_adapt_then_filter_with_the_update_gives_the_encoders_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder_with_validation(tmp_path)
    original = _filter(folder, tmp_path / "tiny.pt", 0)
    model = tmp_path / "tiny.nnsl"  # the filter a decoder holds
    assert main(["pack", str(original), "--coder", "raw", "--out", str(model)]) == 0
    cache = ["--cache", str(tmp_path / "cache")]
    argv = ["adapt", str(model), "--sequences", str(folder), "--steps", "3", "--nnr-qps=-36,-28", *cache]
    assert main([*argv, "--out", str(tmp_path / "a"), "--json", str(tmp_path / "a.json")]) == 0
    result = json.loads((tmp_path / "a.json").read_text())
    (row,) = result["rows"]
    assert row["sequence"] == "Tiny" and row["qp"] == 37 and row["psnr_y_switch"] >= row["psnr_y_codec"]
    assert row["psnr_y_adapted"] >= row["psnr_y_codec"] and row["update_bytes"] >= 1
    assert set(result["mean"]) >= {"bd_rate_base", "bd_rate_switch", "bd_rate_adapted", "update_share_qp37"}
    assert set(result["per_sequence"][0]) >= {"sequence", "bd_rate_base", "bd_rate_switch", "bd_rate_adapted"}

    tiny = next(folder.glob("Tiny_*.yuv"))
    (tmp_path / "e").mkdir()
    encoded = ["encode", str(tiny), "--codec", "x265", "--qp", "37", "--out", str(tmp_path / "e"), "--save-decoded"]
    assert main([*encoded, "--no-vmaf", "--json", str(tmp_path / "e.json")]) == 0
    decoded = json.loads((tmp_path / "e.json").read_text())["decoded"]
    update = row["update"]
    filtered = ["filter", str(model), "--input", decoded, "--reference", str(tiny), "--update", update]
    assert main([*filtered, "--out", str(tmp_path / "f.yuv"), "--json", str(tmp_path / "f.json")]) == 0
    after = json.loads((tmp_path / "f.json").read_text())["psnr_after"]["y"]
    assert after == pytest.approx(row["psnr_y_adapted"], abs=1e-9)

    evaluated = ["evaluate", str(original), str(model), "--sequences", str(folder), "--repetitions", "1", *cache]
    assert main([*evaluated, "--update", str(tmp_path / "a"), "--json", str(tmp_path / "v.json")]) == 0
    adapted = json.loads((tmp_path / "v.json").read_text())["adapted"]
    assert adapted["rows"][0]["psnr_y_adapted"] == pytest.approx(row["psnr_y_adapted"], abs=1e-9)
    assert adapted["rows"][0]["update_bytes"] == row["update_bytes"]
    _fails_with(capsys, [*evaluated, "--update", str(tmp_path)], "Tiny_qp37.nnsu: no such file")

    other = _filter(folder, tmp_path / "other.pt", 1)
    _fails_with(capsys, [*filtered[:1], str(other), *filtered[2:], "--out", str(tmp_path / "g.yuv")], "SHA-256")
    _fails_with(capsys, ["inspect", update], "a content-adaptive update, not a filter")
    Path(tmp_path / "cut.nnsu").write_bytes(Path(update).read_bytes()[:-7])
    cut = [*filtered[:-1], str(tmp_path / "cut.nnsu"), "--out", str(tmp_path / "h.yuv")]
    _fails_with(capsys, cut, "truncated")
    _fails_with(capsys, [*filtered, "--qp", "22", "--out", str(tmp_path / "i.yuv")], "made for QP 37")
