"""The whole chain on real content, command by command, with its figures held to bounds (``make test-slow``)."""

import json
import math
from pathlib import Path
from typing import Any

import pytest

from nnslim.cli import main

pytestmark = pytest.mark.slow

RECIPE = """name = "end-to-end"
[[stage]]
kind = "iterate"
rounds = 2
fraction = 0.25
round_to = 4
minimum = 4
[stage.finetune]
steps = 40
batch = 8
patch = 48
[[stage]]
kind = "quantize"
method = "uniform"
bits = 8
[stage.finetune]
steps = 40
batch = 8
patch = 48
"""


def _run(argv: list[Any], result: Path) -> dict[str, Any]:
    """Run one command, writing its JSON to ``result``; returns the JSON."""
    assert main([*map(str, argv), "--json", str(result)]) == 0, argv
    document: dict[str, Any] = json.loads(result.read_text())
    return document


def test_sequences_train_compress_pack_unpack_evaluate_filter(tmp_path: Path) -> None:
    """Every command from the sequences to the filtered video, with the figures a working chain gives.

    Three default sequences (train, validation, test), and a small post-filter trained on x265 at QP 37.
    """
    folder, cache, model = tmp_path / "sequences", tmp_path / "cache", tmp_path / "filter.pt"
    built = _run(["sequences", "--out", folder, "--only", "Astronaut,Chelsea,Coffee"], tmp_path / "sequences.json")
    assert [s["split"] for s in built["sequences"]] == ["train", "train", "test"] and built["unreproduced"] == []
    data = ["--sequences", folder, "--cache", cache]

    train = ["train", "--arch", "postfilter", "--arch-args", '{"channels": 16, "layers": 4}', "--qp", "37"]
    train += ["--train", "Astronaut", "--validation", "Chelsea", "--steps", 300, "--batch", 8, "--patch", 48]
    trained = _run([*train, "--checkpoint-every", 150, *data, "--out", model], tmp_path / "train.json")
    assert [h["step"] for h in trained["history"]] == [150, 300]
    assert all(math.isfinite(h["loss"]) and 0 < h["loss"] < 0.01 for h in trained["history"])
    assert abs(trained["validation"]["gain_db"]) < 0.5  # from the identity, within 0.5 dB after 300 steps

    recipe, slim = tmp_path / "recipe.toml", tmp_path / "slim"
    recipe.write_text(RECIPE)
    compress = ["compress", model, "--recipe", recipe, "--max-loss", 1.0, "--no-timing", "--threads", 2, *data]
    compressed = _run([*compress, "--out", slim], tmp_path / "compress.json")
    first, last = compressed["original_step"], compressed["slim_step"]
    assert last["parameters"] < 0.9 * first["parameters"] and last["kmac_per_pixel"] < first["kmac_per_pixel"]
    assert last["loss_db"] <= 1.0 and compressed["onnx"]["max_difference"] < 1e-4

    packed = tmp_path / "slim.nnsl"
    pack = _run(["pack", slim, "--coder", "nnr", "--nnr-qp", -32, "--out", packed], tmp_path / "pack.json")
    assert pack["bytes"] == packed.stat().st_size and pack["bytes"] < pack["fp32_bytes"] / 2
    assert pack["bytes"] - pack["header_bytes"] < last["parameters"]  # under a byte a weight at QP -32
    inspected = _run(["inspect", packed], tmp_path / "inspect.json")
    assert inspected["bytes"] == pack["bytes"] and {t["coder"] for t in inspected["tensors"]} == {"nnr"}
    decoded = tmp_path / "decoded"
    _run(["unpack", packed, "--out", decoded], tmp_path / "unpack.json")

    evaluate = ["evaluate", model, packed, *data, "--frames", 16, "--repetitions", 1, "--threads", 2]
    table = _run(evaluate, tmp_path / "evaluate.json")
    assert table["sequences"] == ["Coffee"] and table["size"]["compressed_bytes"] == pack["bytes"]
    assert table["size"]["ratio"] > 8  # 4 bytes a weight of the original against the file
    assert math.isfinite(table["performance"]["loss_db"]) and abs(table["performance"]["loss_db"]) < 0.5
    original, reconstructed = table["complexity"]["original"], table["complexity"]["reconstructed"]
    assert (original["parameters"], reconstructed["parameters"]) == (first["parameters"], last["parameters"])
    assert all(table["runtime"][side]["torch_ms"] > 0 for side in ("original", "reconstructed"))

    assessed = _run(["assess", decoded / "slim.pt", *data, "--frames", 16], tmp_path / "assess.json")
    assert [r["sequence"] for r in assessed["rows"]] == ["Coffee"] and abs(assessed["mean"]["gain_db"]) < 1.0
    coffee = next(folder.glob("Coffee_*.yuv"))
    encoded = ["encode", coffee, "--codec", "x265", "--qp", 37, "--frames", 16, "--out", tmp_path, "--no-vmaf"]
    decoded_yuv = Path(_run([*encoded, "--save-decoded"], tmp_path / "encode.json")["decoded"])
    filtered = ["filter", decoded / "slim.pt", "--input", decoded_yuv, "--reference", coffee]
    applied = _run([*filtered, "--out", tmp_path / "filtered.yuv"], tmp_path / "filter.json")
    before, after = applied["psnr_before"]["y"], applied["psnr_after"]["y"]
    assert applied["frames"] == 16 and 25 < before < 45 and abs(after - before) < 1.0
    row = next(r for r in assessed["rows"] if r["qp"] == 37)
    assert after - before == pytest.approx(row["gain_db"], abs=1e-6)  # the same frames, filtered the same way
