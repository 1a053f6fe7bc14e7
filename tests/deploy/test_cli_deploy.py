import json
from pathlib import Path

import onnx
import pytest

from nnslim.cli import main
from nnslim.models.filters import ArchSpec, build
from nnslim.models.train import save_filter
from tests.compress.user_filter import USER
from tests.conftest import make_folder_with_validation
from tests.deploy.common import ARCH, QP_ARCH, tiny_filter

TRAINING = {"codec": "x265", "qps": [37], "train_sequences": ["TinyTrain"], "validation_sequences": ["TinyVal"]}


def _saved_filter(tmp_path: Path) -> Path:
    """A tiny QP filter whose description names TinyTrain for training and TinyVal for validation."""
    path = tmp_path / "tiny.pt"
    save_filter(tiny_filter(QP_ARCH), path, {"arch": QP_ARCH.to_dict(), "training": TRAINING})
    return path


def _deployed(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """A sequence folder, the tiny QP filter, its int8 model (``nnslim deploy``) and the data flags that made it."""
    folder = make_folder_with_validation(tmp_path)
    model, int8 = _saved_filter(tmp_path), tmp_path / "int8.onnx"
    data = ["--sequences", str(folder), "--cache", str(tmp_path / "cache"), "--threads", "1"]
    assert main(["deploy", str(model), "--out", str(int8), "--max-loss", "5", "--calibration-tiles", "4", *data]) == 0
    return folder, model, int8, data


def _fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnslim: error: ") and message in err, err


def test_deploy_writes_the_int8_model_and_its_loss_from_a_filter_or_its_nnsl_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder_with_validation(tmp_path)
    model = _saved_filter(tmp_path)
    data = ["--sequences", str(folder), "--cache", str(tmp_path / "cache"), "--threads", "1"]
    out, result = tmp_path / "int8.onnx", tmp_path / "deploy.json"
    argv = ["deploy", str(model), "--out", str(out), "--max-loss", "5", "--calibration-tiles", "4", *data]
    assert main([*argv, "--json", str(result)]) == 0
    found = json.loads(result.read_text())
    assert found["bytes"] == out.stat().st_size and found["loss_db_validation"] <= 5
    assert found["calibration_sequences"] == ["TinyTrain"] and found["validation_sequences"] == ["TinyVal"]
    assert found["calibration_tiles"] == 4 and found["float_nodes"] == [] and len(found["trials"]) == 1
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(out)).graph.node}
    _fails_with(capsys, [*argv, "--max-loss", "-1"], "the loss budget must be 0 dB or more")
    _fails_with(capsys, ["deploy", str(model), "--out", str(tmp_path / "none" / "x.onnx"), *data], "none")
    packed = tmp_path / "tiny.nnsl"
    assert main(["pack", str(model), "--out", str(packed)]) == 0
    assert main(["deploy", str(packed), "--out", str(tmp_path / "packed.onnx"), "--max-loss", "5", *data]) == 0


def test_a_users_filter_without_int8_operators_deploys_only_when_trusted_and_with_float_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder_with_validation(tmp_path)
    model = tmp_path / "user.pt"
    arch = ArchSpec(USER, {"channels": 8})
    save_filter(build(arch).eval(), model, {"arch": arch.to_dict(), "training": TRAINING})
    data = ["--sequences", str(folder), "--cache", str(tmp_path / "cache"), "--threads", "1", "--max-loss", "5"]
    argv = ["deploy", str(model), "--out", str(tmp_path / "user.onnx"), "--calibration-tiles", "4", *data]
    _fails_with(capsys, argv, "--trust-factory")
    _fails_with(capsys, [*argv, "--trust-factory", USER], "DepthToSpace (/up/DepthToSpace) in int8")
    result = tmp_path / "user.json"
    assert main([*argv, "--trust-factory", USER, "--float-fallback", "--json", str(result)]) == 0
    kept = {n["op_type"]: n["why"] for n in json.loads(result.read_text())["float_nodes"]}
    assert kept == {"PRelu": "no int8 operator", "DepthToSpace": "no int8 operator"}


def test_filter_runs_a_filter_in_each_runtime_and_an_int8_model_only_as_what_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, model, int8, _ = _deployed(tmp_path)
    video = next(folder.glob("Tiny_*.yuv"))
    psnr = {}
    for name, argv in {
        "torch": [str(model)],
        "onnxruntime": [str(model), "--runtime", "onnxruntime"],
        "onnxruntime_int8": [str(int8)],
    }.items():
        out, result = tmp_path / f"{name}.yuv", tmp_path / f"{name}.json"
        common = ["--input", str(video), "--reference", str(video), "--qp", "37", "--out", str(out)]
        assert main(["filter", *argv, *common, "--json", str(result)]) == 0
        found = json.loads(result.read_text())
        assert found["runtime"] == name and out.stat().st_size == video.stat().st_size
        psnr[name] = found["psnr_after"]["y"]
    tiled = tmp_path / "tiled.yuv"
    common = ["--input", str(video), "--qp", "37", "--tile", "32", "--out", str(tiled)]
    assert main(["filter", str(int8), *common]) == 0
    assert tiled.read_bytes() == (tmp_path / "onnxruntime_int8.yuv").read_bytes()  # whole frame by default
    assert abs(psnr["onnxruntime"] - psnr["torch"]) < 0.01
    assert abs(psnr["onnxruntime_int8"] - psnr["torch"]) < 5
    rest = ["--input", str(video), "--qp", "37", "--out", str(tmp_path / "x.yuv")]
    _fails_with(capsys, ["filter", str(model), "--runtime", "onnxruntime_int8", *rest], "nnslim deploy")
    _fails_with(capsys, ["filter", str(int8), "--runtime", "onnxruntime", *rest], "runs in onnxruntime_int8")
    _fails_with(capsys, ["filter", str(int8), *rest[:2], "--out", str(tmp_path / "x.yuv")], "give --qp")
    assert not (tmp_path / "x.yuv").exists()


def test_evaluate_measures_an_int8_model_in_its_own_runtime_against_the_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model, int8, data = _deployed(tmp_path)
    argv = ["evaluate", str(model), str(int8), *data, "--frames", "2", "--repetitions", "1"]
    result = tmp_path / "evaluate.json"
    assert main([*argv, "--runtime", "onnxruntime_int8", "--json", str(result)]) == 0
    found = json.loads(result.read_text())
    assert found["size"]["compressed_bytes"] == int8.stat().st_size
    assert set(found["runtime"]["reconstructed"]) == {"onnxruntime_int8_ms"}
    assert found["runtime"]["speedup_vs_torch_fp32"] > 0 and 0 < abs(found["performance"]["loss_db"]) < 5
    _fails_with(capsys, [*argv, "--runtime", "onnxruntime"], "runs in onnxruntime_int8")
    _fails_with(capsys, [*argv, "--update", str(tmp_path)], "not to an .onnx file")


def test_the_budget_bounds_the_loss_against_the_original_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder_with_validation(tmp_path)
    model = _saved_filter(tmp_path)
    data = ["--sequences", str(folder), "--cache", str(tmp_path / "cache"), "--threads", "1", "--max-loss", "5"]
    argv = ["deploy", str(model), "--out", str(tmp_path / "int8.onnx"), "--calibration-tiles", "4", *data]
    alone, against = tmp_path / "alone.json", tmp_path / "against.json"
    assert main([*argv, "--json", str(alone)]) == 0
    assert main([*argv, "--against", str(model), "--json", str(against)]) == 0
    found = json.loads(against.read_text())
    assert found["against"] == str(model)
    assert found["loss_db_validation"] == json.loads(alone.read_text())["loss_db_validation"]
    other = tmp_path / "other.pt"
    save_filter(build(ARCH), other, {"arch": ARCH.to_dict(), "training": TRAINING})
    _fails_with(capsys, [*argv, "--against", str(other)], str(other))
