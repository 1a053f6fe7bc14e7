from pathlib import Path

import numpy as np
import pytest

from nnslim.errors import NnslimError
from nnslim.video.yuv import (
    Yuv420,
    describe_yuv,
    frame_bytes,
    jvet_name,
    parse_size,
    read_yuv,
    to_8bit,
    to_10bit,
    write_yuv,
)


def _random_video(frames: int = 3, width: int = 16, height: int = 8, seed: int = 0) -> Yuv420:
    rng = np.random.default_rng(seed)
    return Yuv420(
        rng.integers(0, 256, (frames, height, width), dtype=np.uint8),
        rng.integers(0, 256, (frames, height // 2, width // 2), dtype=np.uint8),
        rng.integers(0, 256, (frames, height // 2, width // 2), dtype=np.uint8),
    )


def test_write_then_read_gives_the_same_planes(tmp_path: Path) -> None:
    video = _random_video()
    path = tmp_path / jvet_name("Noise", 16, 8, 30)
    write_yuv(path, video)
    assert path.stat().st_size == 3 * frame_bytes(16, 8)
    seq = describe_yuv(path)
    assert (seq.name, seq.width, seq.height, seq.fps, seq.frames) == ("Noise", 16, 8, 30.0, 3)
    back = read_yuv(seq)
    for a, b in zip(video.planes, back.planes, strict=True):
        np.testing.assert_array_equal(a, b)
    middle = read_yuv(seq, frames=1, start=1)
    np.testing.assert_array_equal(middle.y[0], video.y[1])


def test_planar_layout_is_y_then_u_then_v_per_frame(tmp_path: Path) -> None:
    video = _random_video(frames=2, width=4, height=2)
    raw = video.to_bytes()
    assert raw[:8] == video.y[0].tobytes()
    assert raw[8:10] == video.u[0].tobytes()
    assert raw[10:12] == video.v[0].tobytes()
    assert raw[12:20] == video.y[1].tobytes()


def test_ten_bit_round_trip_is_exact() -> None:
    video = _random_video()
    ten = to_10bit(video)
    assert ten.y.dtype == np.uint16 and int(ten.y.max()) <= 1020
    back = to_8bit(ten)
    for a, b in zip(video.planes, back.planes, strict=True):
        np.testing.assert_array_equal(a, b)


def test_ten_bit_file_round_trip(tmp_path: Path) -> None:
    video = to_10bit(_random_video())
    path = tmp_path / "Noise_16x8_30fps_10bit_420.yuv"
    write_yuv(path, video)
    seq = describe_yuv(path)
    assert seq.bitdepth == 10 and seq.frames == 3
    np.testing.assert_array_equal(read_yuv(seq).v, video.v)


def test_size_that_does_not_divide_into_frames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clip.yuv"
    path.write_bytes(bytes(frame_bytes(16, 8) * 2 + 5))
    with pytest.raises(NnslimError, match="not a whole number of 16x8"):
        describe_yuv(path, (16, 8))


def test_unnamed_yuv_needs_a_size(tmp_path: Path) -> None:
    path = tmp_path / "clip.yuv"
    path.write_bytes(bytes(frame_bytes(16, 8)))
    with pytest.raises(NnslimError, match="--size"):
        describe_yuv(path)
    assert describe_yuv(path, (16, 8)).frames == 1


@pytest.mark.parametrize("text", ["416", "416x", "0x240", "415x240", "axb"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(NnslimError):
        parse_size(text)


def test_reading_past_the_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / jvet_name("Noise", 16, 8, 30)
    write_yuv(path, _random_video())
    with pytest.raises(NnslimError, match="file has 3"):
        read_yuv(describe_yuv(path), frames=4)
