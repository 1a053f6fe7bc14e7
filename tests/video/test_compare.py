import math
from pathlib import Path

import pytest

from nnslim.video import compare
from nnslim.video.codecs import get_codec
from nnslim.video.compare import Point, cached_row, run_point, summarize
from nnslim.video.yuv import Sequence


def _rows(codec: str, scale: float, seconds: float) -> list[dict]:
    kbps = [100.0, 200.0, 400.0, 800.0]
    db = [30.0, 33.0, 36.0, 39.0]
    return [
        {
            "codec": codec,
            "standard": "S",
            "preset": "p",
            "encoder_version": "v",
            "sequence": "A",
            "qp": qp,
            "kbps": k * scale,
            "psnr_y": d,
            "psnr_yuv": d,
            "vmaf": None,
            "encode_s": seconds,
            "encode_cpu_s": seconds,
            "decode_s": 0.1,
        }
        for qp, k, d in zip((37, 32, 27, 22), kbps, db, strict=True)
    ]


def test_summary_gives_bd_rate_and_time_ratio_against_the_anchor() -> None:
    rows = _rows("x264", 1.0, 1.0) + _rows("x265", 0.8, 5.0)
    summary, per_sequence = summarize(rows, "x264")
    by_codec = {s["codec"]: s for s in summary}
    assert by_codec["x264"]["bd_rate_vs_x264"] == pytest.approx(0.0, abs=1e-9)
    assert by_codec["x265"]["bd_rate_vs_x264"] == pytest.approx(-20.0, abs=1e-6)
    assert by_codec["x265"]["encode_time_vs_x264"] == pytest.approx(5.0)
    assert math.isnan(by_codec["x265"]["vmaf"])
    assert [p["sequence"] for p in per_sequence] == ["A", "A"]


def test_finished_points_are_not_encoded_again(
    tiny_sequence: Sequence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    point = Point(tiny_sequence, get_codec("x264"), 32)
    assert cached_row(point, None, tmp_path) is None
    first = run_point(point, None, tmp_path, with_vmaf=False)
    assert Path(first["bitstream"]).is_file()

    def fail(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("measured again")

    monkeypatch.setattr(compare, "measure", fail)
    assert run_point(point, None, tmp_path, with_vmaf=False) == first


def test_a_moved_cache_is_used_and_a_lost_bitstream_is_encoded_again(tiny_sequence: Sequence, tmp_path: Path) -> None:
    point = Point(tiny_sequence, get_codec("x264"), 32)
    first = run_point(point, 2, tmp_path / "old", with_vmaf=False)
    (tmp_path / "old").rename(tmp_path / "new")
    moved = cached_row(point, 2, tmp_path / "new")
    assert moved is not None and Path(moved["bitstream"]).is_file()
    assert Path(moved["bitstream"]).parent.parent.parent == tmp_path / "new"
    assert {k: v for k, v in moved.items() if k != "bitstream"} == {k: v for k, v in first.items() if k != "bitstream"}
    Path(moved["bitstream"]).unlink()
    assert cached_row(point, 2, tmp_path / "new") is None
    again = run_point(point, 2, tmp_path / "new", with_vmaf=False)
    assert Path(again["bitstream"]).is_file() and again["kbps"] == first["kbps"]
