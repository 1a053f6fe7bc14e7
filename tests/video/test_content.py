import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnslim.errors import NnslimError
from nnslim.io import sha256_file
from nnslim.video.codecs import ffmpeg_exe
from nnslim.video.content import (
    DEFAULT_RECIPES,
    box_downscale,
    build_sequences,
    import_video,
    load_manifest,
    rgb_to_yuv420,
    sample_bilinear,
    select,
)
from nnslim.video.yuv import Sequence, read_yuv

ONE = 1 << 16


def test_sampling_at_whole_pixels_is_a_crop() -> None:
    image = np.arange(100, dtype=np.uint8).reshape(10, 10)
    out = sample_bilinear(image, 2 * ONE, 3 * ONE, ONE, 4, 5)
    np.testing.assert_array_equal(out, image[3:8, 2:6])


def test_sampling_halfway_averages_neighbours() -> None:
    image = np.array([[0, 100], [100, 200]], dtype=np.uint8)
    assert sample_bilinear(image, ONE // 2, ONE // 2, ONE, 1, 1)[0, 0] == 100


def test_box_downscale_rounds() -> None:
    plane = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=np.uint8)
    assert box_downscale(plane, 3)[0, 0] == 4


def test_rgb_to_yuv_limited_range() -> None:
    rgb = np.zeros((2, 4, 3), dtype=np.uint8)
    rgb[:, 2:] = 255
    y, u, v = rgb_to_yuv420(rgb)
    assert list(y[0]) == [16, 16, 235, 235]
    assert list(u[0]) == [128, 128] and list(v[0]) == [128, 128]


def _recipe(name: str):
    return next(r for r in DEFAULT_RECIPES if r.name == name)


def test_camera_move_sequence_is_bit_exact(tmp_path: Path) -> None:
    (seq,) = build_sequences(tmp_path, (_recipe("Chelsea"),))
    assert seq.sha256 == _recipe("Chelsea").sha256
    assert seq.split == "train" and seq.frames == 64


def test_natural_clip_is_bit_exact(tmp_path: Path) -> None:
    (seq,) = build_sequences(tmp_path, (_recipe("Carphone"),))
    assert seq.sha256 == _recipe("Carphone").sha256
    listed = load_manifest(tmp_path)
    assert [(s.name, s.split, s.size, s.sha256) for s in listed] == [("Carphone", "test", "176x144", seq.sha256)]


def test_splits_are_fixed_and_disjoint() -> None:
    train = {r.name for r in DEFAULT_RECIPES if r.split == "train"}
    test = {r.name for r in DEFAULT_RECIPES if r.split == "test"}
    assert train and test and not train & test
    assert any((r.width, r.height) == (1920, 1080) and r.split == "test" for r in DEFAULT_RECIPES)
    assert all(r.frames >= 60 for r in DEFAULT_RECIPES if r.split == "test")


def _ffmpeg_copy(seq: Sequence, out: Path, *codec: str) -> None:
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        seq.size,
        "-r",
        "30",
        "-i",
        str(seq.path),
        *codec,
        str(out),
    ]
    subprocess.run(cmd, check=True)


@pytest.mark.parametrize(("suffix", "codec"), [(".y4m", ()), (".mp4", ("-c:v", "libx264", "-qp", "0"))])
def test_users_bring_y4m_and_mp4(suffix: str, codec: tuple[str, ...], tiny_sequence: Sequence, tmp_path: Path) -> None:
    source = tmp_path / f"mine{suffix}"
    _ffmpeg_copy(tiny_sequence, source, *codec)
    folder = tmp_path / "seqs"
    folder.mkdir()
    added = import_video(source, folder, "test")
    assert (added.name, added.size, added.frames, added.fps) == ("mine", "128x64", 8, 30.0)
    np.testing.assert_array_equal(read_yuv(added).y, read_yuv(tiny_sequence).y)
    assert load_manifest(folder)[0].sha256 == sha256_file(added.path)


def test_user_yuv_needs_its_size(tiny_sequence: Sequence, tmp_path: Path) -> None:
    raw = tmp_path / "raw.yuv"
    raw.write_bytes(tiny_sequence.path.read_bytes())
    folder = tmp_path / "seqs"
    folder.mkdir()
    with pytest.raises(NnslimError, match="--size"):
        import_video(raw, folder, "train")
    added = import_video(raw, folder, "train", size=(128, 64), fps=25.0)
    assert added.path.name == "raw_128x64_25fps_8bit_420.yuv" and added.split == "train"


def test_select_filters_by_split_name_and_size(tiny_folder: Path) -> None:
    sequences = load_manifest(tiny_folder)
    assert [s.name for s in select(sequences, "test")] == ["Tiny"]
    assert [s.name for s in select(sequences, None, ["TinyTrain"])] == ["TinyTrain"]
    assert list(select(sequences, None, None, (64, 64))) == []


def test_missing_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NnslimError, match=r"no sequences\.json"):
        load_manifest(tmp_path)
