from pathlib import Path

import numpy as np
import pytest

from nnslim.cli import main
from nnslim.errors import NnslimError
from nnslim.video.codecs import CODECS, encode, encoder_version, ffmpeg_exe, get_codec
from nnslim.video.metrics import psnr
from nnslim.video.yuv import Sequence, read_yuv


@pytest.mark.parametrize("name", list(CODECS))
def test_real_encode_and_decode(name: str, tiny_sequence: Sequence, tmp_path: Path) -> None:
    spec = get_codec(name)
    fine = encode(tiny_sequence, spec, 22, tmp_path)
    coarse = encode(tiny_sequence, spec, 37, tmp_path)
    original = read_yuv(tiny_sequence)
    for coded in (fine, coarse):
        assert coded.bitstream.is_file() and coded.bitstream.stat().st_size > 0
        assert coded.decoded.y.shape == original.y.shape and coded.decoded.y.dtype == np.uint8
        assert coded.frames == 8 and coded.bits > 0
        assert coded.kbps == pytest.approx(coded.bits / (8 / 30) / 1000)
        assert coded.encode_wall_s > 0 and coded.encode_cpu_s > 0 and coded.decode_s > 0
    assert coarse.bits < fine.bits
    assert psnr(original, coarse.decoded).y < psnr(original, fine.decoded).y
    assert psnr(original, fine.decoded).y > 35
    assert fine.encoder_version == encoder_version(name) != "unknown"


def test_fewer_frames_can_be_coded(tiny_sequence: Sequence, tmp_path: Path) -> None:
    coded = encode(tiny_sequence, get_codec("x264"), 32, tmp_path, frames=3)
    assert coded.decoded.frames == 3


def test_unknown_codec_names_the_known_ones() -> None:
    with pytest.raises(NnslimError, match=r"unknown codec 'h263'.*x264"):
        get_codec("h263")


@pytest.mark.parametrize(("name", "qp"), [("x264", 52), ("x265", -1), ("svtav1", 45), ("aom", 10)])
def test_qp_out_of_range_is_refused(name: str, qp: int) -> None:
    with pytest.raises(NnslimError, match=f"QP {qp} is out of range for {name}"):
        get_codec(name).quantizer(qp)


def test_av1_ladder_mapping() -> None:
    assert [get_codec("svtav1").quantizer(qp) for qp in (22, 27, 32, 37)] == [23, 33, 43, 53]
    assert get_codec("x265").quantizer(37) == 37


def test_ten_bit_sequences_are_refused(tiny_sequence: Sequence, tmp_path: Path) -> None:
    ten = Sequence("T", tiny_sequence.path, 128, 64, 30.0, 4, 10)
    with pytest.raises(NnslimError, match="8-bit"):
        encode(ten, get_codec("x264"), 32, tmp_path)


def test_a_missing_ffmpeg_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "ffmpeg"))
    with pytest.raises(NnslimError, match="no FFmpeg to run at"):
        ffmpeg_exe()
    sequence = tmp_path / "Tiny_64x64_30fps_8bit_420.yuv"
    sequence.write_bytes(bytes(64 * 64 * 3 // 2 * 2))
    assert main(["encode", str(sequence), "--codec", "x265", "--qp", "37", "--out", str(tmp_path), "--no-vmaf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no FFmpeg to run at" in err, err
