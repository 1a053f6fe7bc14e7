import functools
import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnslim.cli import main
from nnslim.store import ResultsStore
from nnslim.video import compare
from nnslim.video.yuv import Sequence
from tests.compress.user_filter import USER
from tests.conftest import make_folder_with_validation


def _fails_with(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("nnslim: error: ") and message in err
    assert "Traceback" not in err


def test_wrong_yuv_size_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.yuv"
    clip.write_bytes(bytes(1000))
    _fails_with(
        capsys,
        ["encode", str(clip), "--size", "416x240", "--codec", "x264", "--qp", "32", "--out", str(tmp_path)],
        "not a whole number of 416x240",
    )


def test_unknown_codec_is_one_line(tiny_sequence: Sequence, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(
        capsys,
        ["encode", str(tiny_sequence.path), "--codec", "mpeg2", "--qp", "32", "--out", str(tmp_path)],
        "unknown codec 'mpeg2'",
    )


def test_qp_out_of_range_is_one_line(tiny_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(
        capsys,
        ["codecs", "--sequences", str(tiny_folder), "--codecs", "x264,aom", "--qps", "22,45"],
        "QP 45 is out of range for aom",
    )


def test_missing_output_directory_is_one_line(
    tiny_sequence: Sequence, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails_with(
        capsys,
        ["encode", str(tiny_sequence.path), "--codec", "x264", "--qp", "32", "--out", str(tmp_path / "nowhere")],
        "does not exist",
    )


def test_unwritable_output_is_one_line(tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails_with(
        capsys, ["codecs", "--sequences", str(tiny_folder), "--json", str(blocker / "out.json")], "is not a directory"
    )


def test_missing_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    _fails_with(capsys, ["encode"], "required")


def test_encode_writes_json_and_a_store_row(tiny_sequence: Sequence, tmp_path: Path, private_store: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    report = tmp_path / "new" / "encode.json"  # a --json folder that is missing is made, as `make demo` needs
    argv = ["encode", str(tiny_sequence.path), "--codec", "x265", "--qp", "27", "--out", str(out)]
    assert main([*argv, "--json", str(report), "--save-decoded"]) == 0
    row = json.loads(report.read_text())
    assert Path(row["decoded"]).stat().st_size == tiny_sequence.path.stat().st_size
    for key in (
        "codec",
        "sequence",
        "qp",
        "kbps",
        "psnr_y",
        "psnr_yuv",
        "vmaf",
        "encode_s",
        "encode_cpu_s",
        "decode_s",
        "bits",
    ):
        assert key in row
    assert row["codec"] == "x265" and row["vmaf"] > 50 and Path(row["bitstream"]).is_file()
    (run,) = ResultsStore(private_store).runs()
    assert run.kind == "encode" and run.versions["x265"] != "unknown" and run.id == row["run_id"]
    argv[argv.index("27")] = "37"
    assert main(argv) == 0
    assert main(["runs", "--compare", "1", "2", "--json", str(tmp_path / "c.json")]) == 0
    differences = {d["field"]: (d["1"], d["2"]) for d in json.loads((tmp_path / "c.json").read_text())["differences"]}
    assert differences["params.qp"] == (27, 37) and "results.kbps" in differences


def test_comparison_writes_rows_summary_and_plot(tiny_folder: Path, tmp_path: Path) -> None:
    report, plot = tmp_path / "codecs.json", tmp_path / "rd.png"
    argv = [
        "codecs",
        "--sequences",
        str(tiny_folder),
        "--codecs",
        "x264,x265",
        "--qps",
        "22,27,32,37",
        "--frames",
        "4",
        "--cache",
        str(tmp_path / "cache"),
        "--json",
        str(report),
        "--plot",
        str(plot),
    ]
    assert main(argv) == 0
    document = json.loads(report.read_text())
    assert len(document["rows"]) == 8 and {r["sequence"] for r in document["rows"]} == {"Tiny"}
    for key in ("codec", "sequence", "qp", "kbps", "psnr_y", "psnr_yuv", "vmaf", "encode_s", "decode_s"):
        assert key in document["rows"][0]
    x265 = next(s for s in document["summary"] if s["codec"] == "x265")
    assert -100 < x265["bd_rate_vs_x264"] < 100 and x265["encode_time_vs_x264"] > 0
    assert document["settings"]["bd_method"] == "akima"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interrupted_comparison_resumes_without_redoing_encodes(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "codecs",
        "--sequences",
        str(tiny_folder),
        "--codecs",
        "x264",
        "--qps",
        "22,27,32,37",
        "--no-vmaf",
        "--cache",
        str(tmp_path / "cache"),
    ]
    measured: list[int] = []
    real_measure = compare.measure

    def counting(point: compare.Point, *args: object, **kwargs: object) -> dict:
        if len(measured) == 2:
            raise KeyboardInterrupt
        measured.append(point.qp)
        return real_measure(point, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(compare, "measure", counting)
    assert main(argv) == 130
    assert "resume" in capsys.readouterr().err
    assert measured == [22, 27]
    measured.clear()
    assert main(argv) == 0
    assert measured == [32, 37]


def test_sequences_adds_a_users_file(tiny_sequence: Sequence, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    assert main(["sequences", "--out", str(folder), "--add", str(tiny_sequence.path), "--split", "train"]) == 0
    manifest = json.loads((folder / "sequences.json").read_text())
    assert [(s["name"], s["split"], s["frames"]) for s in manifest["sequences"]] == [("Tiny", "train", 8)]


def _tiny_filter(tiny_folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "tiny.pt"
    argv = [
        "train",
        "--arch",
        "postfilter",
        "--arch-args",
        '{"channels": 4, "layers": 3}',
        "--sequences",
        str(tiny_folder),
        "--validation",
        "",
        "--steps",
        "2",
        "--batch",
        "2",
        "--patch",
        "32",
        "--threads",
        "1",
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    return out


def test_train_filter_and_assess_end_to_end(tiny_folder: Path, tiny_sequence: Sequence, tmp_path: Path) -> None:
    model = _tiny_filter(tiny_folder, tmp_path)
    meta = json.loads(model.with_suffix(".json").read_text())
    assert meta["arch"]["name"] == "postfilter" and meta["training"]["train_sequences"] == ["TinyTrain"]
    out = tmp_path / "filtered.yuv"
    report = tmp_path / "filter.json"
    assert (
        main(
            [
                "filter",
                str(model),
                "--input",
                str(tiny_sequence.path),
                "--reference",
                str(tiny_sequence.path),
                "--out",
                str(out),
                "--json",
                str(report),
            ]
        )
        == 0
    )
    result = json.loads(report.read_text())
    assert result["frames"] == 8 and result["psnr_before"]["y"] == 100.0 and result["peak_rss_mib"] > 0
    assert out.stat().st_size == tiny_sequence.path.stat().st_size
    gain = tmp_path / "gain.json"
    assert (
        main(
            [
                "assess",
                str(model),
                "--sequences",
                str(tiny_folder),
                "--cache",
                str(tmp_path / "cache"),
                "--json",
                str(gain),
            ]
        )
        == 0
    )
    assert [r["sequence"] for r in json.loads(gain.read_text())["rows"]] == ["Tiny"]


def test_assess_refuses_training_sequences(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _tiny_filter(tiny_folder, tmp_path)
    capsys.readouterr()
    _fails_with(
        capsys,
        ["assess", str(model), "--sequences", str(tiny_folder), "--split", "train"],
        "TinyTrain were used in training",
    )


def test_unknown_architecture_is_one_line(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _fails_with(
        capsys,
        ["train", "--arch", "unet", "--sequences", str(tiny_folder), "--out", str(tmp_path / "m.pt")],
        "unknown architecture 'unet'",
    )


def test_filter_with_a_mismatched_size_is_one_line(
    tiny_folder: Path, tiny_sequence: Sequence, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _tiny_filter(tiny_folder, tmp_path)
    odd = tmp_path / "odd.yuv"
    odd.write_bytes(tiny_sequence.path.read_bytes()[:-7])
    capsys.readouterr()
    _fails_with(
        capsys,
        ["filter", str(model), "--input", str(odd), "--size", "128x64", "--out", str(tmp_path / "o.yuv")],
        "not a whole number of 128x64",
    )


def test_training_on_sequences_outside_the_train_split_is_one_line(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--arch", "vrcnn", "--sequences", str(tiny_folder), "--validation", "", "--train", "Tiny"]
    expected = "training sequence(s) Tiny are not in the train split"
    _fails_with(capsys, [*argv, "--out", str(tmp_path / "m.pt")], expected)


def test_a_margin_that_eats_the_patch_is_one_line(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--arch", "vrcnn", "--sequences", str(tiny_folder), "--patch", "32", "--margin", "16"]
    _fails_with(capsys, [*argv, "--out", str(tmp_path / "m.pt")], "--margin 16 leaves nothing of a 32-pixel patch")


def test_compress_writes_a_slim_filter_steps_plot_and_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder_with_validation(tmp_path)
    model = tmp_path / "tiny.pt"
    common = ["--sequences", str(folder), "--cache", str(tmp_path / "cache")]
    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 16, "layers": 3}', "--validation", "TinyVal"]
    assert main([*train, *common, "--steps", "2", "--batch", "2", "--patch", "32", "--out", str(model)]) == 0
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        '[[stage]]\nkind = "iterate"\nrounds = 1\nfraction = 0.5\nround_to = 4\nminimum = 4\n'
        "[stage.finetune]\nsteps = 2\nbatch = 2\npatch = 32\n"
    )
    out = tmp_path / "slim"
    argv = ["compress", str(model), "--recipe", str(recipe), "--out", str(out), "--no-timing", "--max-size", "128x64"]
    assert main([*argv, *common, "--max-loss", "100", "--json", str(tmp_path / "c.json")]) == 0
    for name in ("slim.pt", "slim.json", "steps.json", "steps.png", "slim.onnx"):
        assert (out / name).is_file()
    slim = json.loads((out / "slim.json").read_text())
    assert slim["layers"]["body.0"]["out_channels"] < 16
    assert slim["compression"]["onnx"]["max_difference"] < 1e-4
    assert [s["kind"] for s in json.loads((out / "steps.json").read_text())["steps"]] == ["original", "iterate"]
    _fails_with(capsys, [*argv, *common, "--objective", "speed"], "speed objective decides by timing each step")
    recipe.write_text('runtime = "tpu"\n' + recipe.read_text())
    _fails_with(capsys, [*argv, *common], "must be one of torch, onnxruntime, onnxruntime_int8, not 'tpu'")


def test_pack_with_rate_control_then_inspect_and_unpack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_folder_with_validation(tmp_path)
    model = tmp_path / "tiny.pt"
    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 4, "layers": 3}', "--validation", "TinyVal"]
    common = ["--sequences", str(folder), "--cache", str(tmp_path / "cache")]
    assert main([*train, *common, "--steps", "20", "--batch", "2", "--patch", "32", "--out", str(model)]) == 0
    common += ["--max-size", "128x64"]
    packed = tmp_path / "f.nnsl"
    argv = ["pack", str(model), "--out", str(packed), "--max-loss", "0.05", "--json", str(tmp_path / "p.json")]
    assert main([*argv, *common, "--frame-step", "1"]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["bytes"] == packed.stat().st_size and result["chosen"]["loss_db"] <= 0.05
    assert result["decided_on"] == "validation" and result["validation_sequences"] == ["TinyVal"]
    assert result["test_sequences"] == ["Tiny"] and math.isfinite(result["test_loss_db"])
    assert result["validation_loss_db"] == result["chosen"]["loss_db"]
    within = [t["nnr_qp"] for t in result["trials"] if t["within"]]
    chosen = result["chosen"]["nnr_qp"]
    assert chosen == max(within) == result["config"]["nnr_qp"] == result["config"]["qp"] == result["chosen"]["qp"]
    tried = {t["nnr_qp"] for t in result["trials"]}
    assert all(qp in tried for qp in range(chosen + 1, min(chosen + 8, -1) + 1))
    assert main(["inspect", str(packed), "--json", str(tmp_path / "i.json")]) == 0
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["bytes"] == result["bytes"] and {t["coder"] for t in info["tensors"]} == {"nnr"}
    assert main(["unpack", str(packed), "--out", str(tmp_path / "u")]) == 0
    assert main(["assess", str(tmp_path / "u" / "slim.pt"), *common]) == 0
    packed.write_bytes(packed.read_bytes()[:-10])
    _fails_with(capsys, ["unpack", str(packed), "--out", str(tmp_path / "v")], "(truncated or padded)")
    _fails_with(capsys, ["inspect", str(tmp_path / "none.nnsl")], "no such file")
    _fails_with(capsys, ["pack", str(model), "--coder", "zip", "--out", str(packed)], "unknown coder 'zip'")


def test_pack_takes_the_old_qp_flag_with_a_deprecation_message(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _tiny_filter(tiny_folder, tmp_path)
    files = {flag: tmp_path / f"{flag.strip('-')}.nnsl" for flag in ("--nnr-qp", "--qp")}
    for flag, packed in files.items():
        argv = ["pack", str(model), flag, "-20", "--out", str(packed), "--json", str(packed.with_suffix(".json"))]
        assert main(argv) == 0
        config = json.loads(packed.with_suffix(".json").read_text())["config"]
        assert config["nnr_qp"] == config["qp"] == -20
    assert "--qp is deprecated; use --nnr-qp" in capsys.readouterr().err
    assert files["--qp"].read_bytes() == files["--nnr-qp"].read_bytes()


def test_evaluate_refuses_bad_input_in_one_line(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _tiny_filter(tiny_folder, tmp_path)
    packed = tmp_path / "f.nnsl"
    assert main(["pack", str(model), "--coder", "raw", "--out", str(packed)]) == 0
    common = ["--sequences", str(tiny_folder), "--cache", str(tmp_path / "cache")]
    _fails_with(capsys, ["evaluate", str(model), str(tmp_path / "none.nnsl"), *common], "none.nnsl: no such file")
    _fails_with(capsys, ["evaluate", str(model), str(packed), *common, "--split", "train"], "use --split test")
    _fails_with(capsys, ["evaluate", str(model), str(packed), *common, "--names", "TinyTrain"], "no test sequences")
    packed.write_bytes(b"PK" + packed.read_bytes()[2:])
    _fails_with(capsys, ["evaluate", str(model), str(packed), *common], "wrong magic number")


def _tiny_demo(tmp_path: Path) -> list[str]:
    """The quick demo's arguments on a tiny trained filter and tiny sequences."""
    folder = make_folder_with_validation(tmp_path)
    model = tmp_path / "tiny.pt"
    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 8, "layers": 3}', "--validation", "TinyVal"]
    argv = [*train, "--sequences", str(folder), "--steps", "2", "--batch", "2", "--patch", "32", "--out", str(model)]
    assert main(argv) == 0
    assert main(["pack", str(model), "--coder", "raw", "--out", str(model.with_suffix(".bbc.nnsl"))]) == 0
    return ["demo", "--quick", "--model", str(model), "--sequences", str(folder), "--out", str(tmp_path / "demo")]


def test_quick_demo_stopped_with_ctrl_c_resumes_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = _tiny_demo(tmp_path)
    out = tmp_path / "demo"
    started = out / "compress" / "work" / "steps.json"
    # A shell's background job starts with SIGINT ignored, and a child would inherit that: give it Ctrl-C back.
    argv = [sys.executable, "-m", "nnslim", *demo]
    restore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=restore)
    deadline = time.monotonic() + 300
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert b"interrupted; finished work is kept" in err and b"Traceback" not in err
    assert not (out / "compress.json").exists()

    capsys.readouterr()
    assert main([*demo, "--json", str(tmp_path / "d.json")]) == 0
    printed = capsys.readouterr().out
    assert "codec comparison: finished before" in printed and re.search(r"resuming after\s+step \d", printed)
    page = (out / "report" / "index.html").read_text()
    headings = (
        "What this run measured",
        "Codec comparison",
        "Compression steps",
        "Evaluation: compressed in this run",
        "Evaluation: the shipped slim filter",
        "Deployment: int8 in ONNX Runtime",
        "Content adaptation: switch and update, bits counted",
        "Visual comparison",
    )
    for heading in headings:
        assert f"<h2>{heading}</h2>" in page
    assert "quick mode: evaluations on the first 8 frames" in page and "tiny.bbc.nnsl (committed" in page
    assert "each on its own tiles (the original on 256-pixel tiles, the int8 model on whole frames)" in page
    assert page.count("data:image/png;base64,") >= 4
    evaluation = json.loads((out / "evaluate.json").read_text())
    assert evaluation["size"]["compressed_bytes"] == (out / "slim.nnsl").stat().st_size
    int8 = json.loads((out / "evaluate_int8.json").read_text())
    assert int8["size"]["compressed_bytes"] == (out / "slim_int8.onnx").stat().st_size
    assert int8["runtime"]["runtime"] == "onnxruntime_int8" and int8["runtime"]["speedup_vs_torch_fp32"] > 0
    adapted = json.loads((out / "adapt.json").read_text())
    assert [p["sequence"] for p in adapted["per_sequence"]] == ["Tiny"] and (out / "adapt" / "Tiny_qp37.nnsu").is_file()

    (out / "evaluate.json").unlink()
    assert main(demo) == 0
    printed = capsys.readouterr().out
    assert "compress (full recipe): finished before" in printed and "evaluate: done" in printed
    run_id = json.loads((tmp_path / "d.json").read_text())["run_id"]
    assert main(["report", str(run_id)]) == 0


TINY_RECIPE = (
    '[[stage]]\nkind = "iterate"\nrounds = 1\nfraction = 0.5\nround_to = 2\nminimum = 2\n'
    "[stage.finetune]\nsteps = 2\nbatch = 2\npatch = 32\n"
)


def test_assess_refuses_the_sequences_of_the_filter_a_fine_tune_started_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_folder_with_validation(tmp_path)
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 4, "layers": 3}', "--validation", ""]
    train += ["--sequences", str(folder), "--steps", "2", "--batch", "2", "--patch", "32", "--threads", "1"]
    assert main([*train, "--train", "TinyTrain", "--out", str(first)]) == 0
    assert main([*train, "--train", "TinyVal", "--init", str(first), "--out", str(second)]) == 0
    assert json.loads(second.with_suffix(".json").read_text())["training"]["train_sequences"] == ["TinyVal"]
    capsys.readouterr()
    assess = ["assess", str(second), "--sequences", str(folder), "--split", "train", "--names"]
    _fails_with(capsys, [*assess, "TinyTrain"], "TinyTrain were used in training")
    first.with_suffix(".json").rename(tmp_path / "moved.json")  # the recorded description still names it
    _fails_with(capsys, [*assess, "TinyTrain,TinyVal"], "TinyTrain, TinyVal were used in training")


def test_every_command_builds_a_user_architecture_only_when_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command on a user's own network (BatchNorm, PReLU, PixelShuffle) needs --trust-factory naming it."""
    folder = make_folder_with_validation(tmp_path)
    data = ["--sequences", str(folder), "--cache", str(tmp_path / "cache")]
    model, fine = tmp_path / "user.pt", tmp_path / "fine.pt"
    train = ["train", "--arch", USER, "--arch-args", '{"channels": 8}', "--validation", "TinyVal", *data]
    train += ["--steps", "2", "--batch", "2", "--patch", "32", "--threads", "1"]
    assert main([*train, "--out", str(model)]) == 0
    assert main([*train, "--init", str(model), "--out", str(fine)]) == 0  # naming --arch trusts it
    recipe, sweep = tmp_path / "tiny.toml", tmp_path / "sweep.toml"
    recipe.write_text(TINY_RECIPE)
    sweep.write_text(
        f'[sweep]\nmodels = ["{model}"]\nsequences = "{folder}"\nmax_size = "128x64"\nframes = 2\n'
        "budgets = [1.0]\n[space]\nenergy = [0.6]\n"
    )
    slim, packed, decoded = tmp_path / "slim", tmp_path / "user.nnsl", tmp_path / "decoded"
    sized, tiny = [*data, "--max-size", "128x64"], next(folder.glob("Tiny_*.yuv"))
    compress = ["compress", str(model), "--recipe", str(recipe), "--no-timing", "--max-loss", "100", *sized]
    chain = [
        [*compress, "--out", str(slim)],
        ["pack", str(slim), "--out", str(packed)],
        ["unpack", str(packed), "--out", str(decoded)],
        ["evaluate", str(model), str(packed), *sized, "--frames", "2", "--repetitions", "1", "--threads", "1"],
        ["filter", str(decoded / "slim.pt"), "--input", str(tiny), "--out", str(tmp_path / "filtered.yuv")],
        ["assess", str(decoded / "slim.pt"), *sized, "--frames", "2"],
        ["sweep", str(sweep), "--out", str(tmp_path / "sweep"), "--workers", "1", "--cache", str(tmp_path / "cache")],
    ]
    for argv in chain:
        capsys.readouterr()
        _fails_with(capsys, argv, "user_filter.py" if argv[0] == "unpack" else repr(USER))  # unpack shortens it
        result = tmp_path / f"{argv[0]}.json"
        assert main([*argv, "--trust-factory", USER, "--json", str(result)]) == 0, argv
    parameters = json.loads((tmp_path / "evaluate.json").read_text())["complexity"]
    assert parameters["reconstructed"]["parameters"] < parameters["original"]["parameters"]
    assert json.loads((tmp_path / "filter.json").read_text())["frames"] == 8
    assert [r["sequence"] for r in json.loads((tmp_path / "assess.json").read_text())["rows"]] == ["Tiny"]
    assert json.loads((tmp_path / "sweep.json").read_text())["finished"] == 1
