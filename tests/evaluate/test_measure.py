from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.bitstream.pack import PackConfig, pack, unpack
from nnslim.errors import NnslimError
from nnslim.evaluate.measure import EvaluateConfig, Reference, evaluate
from nnslim.models.apply import filter_frames
from nnslim.models.data import encode_pairs
from nnslim.models.filters import ArchSpec, build, parameter_count
from nnslim.models.train import save_filter
from nnslim.video.metrics import psnr_frames
from nnslim.video.yuv import Sequence

SPEC = ArchSpec("postfilter", {"channels": 8, "layers": 3})


def _filter(seed: int = 0) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = build(SPEC)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.02)
    meta = {"format": "nnslim-filter", "arch": SPEC.to_dict(), "layers": {}, "training": {"codec": "x264", "qps": [37]}}
    return model.eval(), meta


def _reference(model: torch.nn.Module, meta: dict, folder: Path) -> Reference:
    save_filter(model, folder / "original.pt", meta)
    return Reference(model, meta, folder / "original.pt", folder / "psnr")


def test_evaluation_table_on_a_tiny_model(tiny_sequence: Sequence, tmp_path: Path) -> None:
    model, meta = _filter()
    packed = pack(model, meta, PackConfig("nnr", nnr_qp=-40))
    pairs = encode_pairs([tiny_sequence], "x264", (32, 37), tmp_path / "cache")
    config = EvaluateConfig(width=64, height=48, repetitions=1, threads=1)
    table = evaluate(_reference(model, meta, tmp_path), packed, pairs, config)

    assert table["size"] == {
        "original_fp32_bytes": 4 * parameter_count(model),
        "compressed_bytes": len(packed),
        "ratio": 4 * parameter_count(model) / len(packed),
    }
    rows = table["performance"]["rows"]
    assert [(r["sequence"], r["qp"]) for r in rows] == [("Tiny", 32), ("Tiny", 37)]
    decoded, _ = unpack(packed)
    for pair, row in zip(pairs, rows, strict=True):
        direct = float(np.mean(psnr_frames(pair.original, filter_frames(decoded, pair.decoded, pair.qp))))
        assert row["psnr_y_reconstructed"] == pytest.approx(direct, abs=1e-9)
        by_original = float(np.mean(psnr_frames(pair.original, filter_frames(model, pair.decoded, pair.qp))))
        assert row["psnr_y_original"] == pytest.approx(by_original, abs=1e-9)
        assert row["psnr_y_codec"] == pytest.approx(float(np.mean(psnr_frames(pair.original, pair.decoded))))
        assert 20 < row["psnr_u_codec"] < 80 and 20 < row["psnr_v_codec"] < 80
    gains = [table["performance"][side]["mean"]["gain_db"] for side in ("original", "reconstructed")]
    assert table["performance"]["loss_db"] == pytest.approx(gains[0] - gains[1])
    assert table["complexity"]["original"] == table["complexity"]["reconstructed"]
    for side in ("original", "reconstructed"):
        assert table["runtime"][side]["torch_ms"] > 0 and table["runtime"][side]["onnxruntime_ms"] > 0
        memory = table["memory"][side]
        assert memory["peak_rss_mib"] >= memory["idle_rss_mib"] > 10
        assert memory["parameter_bytes"] == 4 * parameter_count(model)


def test_the_original_is_measured_once_and_timing_is_optional(tiny_sequence: Sequence, tmp_path: Path) -> None:
    model, meta = _filter()
    reference = _reference(model, meta, tmp_path)
    pairs = encode_pairs([tiny_sequence], "x264", (32, 37), tmp_path / "cache")
    packed = pack(model, meta, PackConfig("nnr", nnr_qp=-40))
    timed = evaluate(reference, packed, pairs, EvaluateConfig(width=64, height=48, repetitions=1, threads=1))
    untimed = evaluate(reference, packed, pairs, EvaluateConfig(timing=False))

    assert len(list(reference.measured.glob("*.json"))) == len(pairs)
    assert untimed["performance"] == timed["performance"]
    assert untimed["runtime"] == untimed["memory"] == {}


def test_a_file_of_another_filter_is_refused(tiny_sequence: Sequence, tmp_path: Path) -> None:
    model, meta = _filter()
    other = ArchSpec("postfilter", {"channels": 4, "layers": 3})
    packed = pack(build(other), {**meta, "arch": other.to_dict()}, PackConfig("raw"))
    pairs = encode_pairs([tiny_sequence], "x264", (37,), tmp_path / "cache")
    config = EvaluateConfig(width=64, height=48, repetitions=1)
    with pytest.raises(NnslimError, match="the file holds a 'postfilter' filter"):
        evaluate(_reference(model, meta, tmp_path), packed, pairs, config)
    packed = pack(model, {**meta, "training": {"codec": "x265", "qps": [37]}}, PackConfig("raw"))
    with pytest.raises(NnslimError, match="trained for codec x265"):
        evaluate(_reference(model, meta, tmp_path), packed, pairs, config)
