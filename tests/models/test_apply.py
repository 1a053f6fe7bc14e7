import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.errors import NnslimError
from nnslim.models.apply import filter_plane, filter_yuv_file, plane_filter
from nnslim.models.filters import ArchSpec, build
from nnslim.video.yuv import Sequence, describe_yuv, read_yuv


def _random_filter() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build(ArchSpec("postfilter", {"channels": 8}))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def test_tiles_with_enough_overlap_equal_the_whole_frame() -> None:
    model = _random_filter()  # receptive field: 7 pixels each side
    plane = np.random.default_rng(0).integers(0, 256, (70, 100), dtype=np.uint8)
    whole = filter_plane(model, plane, 37, tile=512, overlap=0)
    tiled = filter_plane(model, plane, 37, tile=32, overlap=8)
    np.testing.assert_array_equal(whole, tiled)
    assert not np.array_equal(whole, plane)


def test_filtering_a_file_reports_psnr_and_passes_chroma(tiny_sequence: Sequence, tmp_path: Path) -> None:
    out = tmp_path / "filtered_128x64_30fps_8bit_420.yuv"
    result = filter_yuv_file(plane_filter(_random_filter(), 37, tile=48), tiny_sequence, out, reference=tiny_sequence)
    filtered, original = read_yuv(describe_yuv(out)), read_yuv(tiny_sequence)
    np.testing.assert_array_equal(filtered.u, original.u)
    np.testing.assert_array_equal(filtered.v, original.v)
    assert result["psnr_before"]["y"] == 100.0
    assert result["psnr_after"]["y"] < 100.0 and result["psnr_after"]["u"] == 100.0
    assert result["frames"] == 8 and result["peak_rss_mib"] > 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_filtered_file_has_the_permissions_of_a_new_file(tiny_sequence: Sequence, tmp_path: Path) -> None:
    out, plain = tmp_path / "filtered.yuv", tmp_path / "plain"
    plain.touch()
    filter_yuv_file(plane_filter(_random_filter(), 37), tiny_sequence, out)
    assert stat.S_IMODE(out.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_failure_midway_leaves_neither_output_nor_temporary_file(tiny_sequence: Sequence, tmp_path: Path) -> None:
    def fails_at_frame_3(index: int, plane: np.ndarray) -> np.ndarray:
        if index == 3:
            raise RuntimeError("stopped")
        return plane

    with pytest.raises(RuntimeError, match="stopped"):
        filter_yuv_file(fails_at_frame_3, tiny_sequence, tmp_path / "o.yuv")
    assert list(tmp_path.iterdir()) == [tiny_sequence.path]


def test_ten_bit_input_is_refused(tiny_sequence: Sequence, tmp_path: Path) -> None:
    ten = Sequence("T", tiny_sequence.path, 128, 64, 30.0, 4, 10)
    with pytest.raises(NnslimError, match="8-bit"):
        filter_yuv_file(plane_filter(_random_filter(), 37), ten, tmp_path / "o.yuv")
