import math

import numpy as np
import pytest

from nnslim.video.metrics import Psnr, bd_psnr, bd_rate, psnr, psnr_frames, vmaf
from nnslim.video.yuv import Sequence, Yuv420, read_yuv


def test_psnr_matches_a_hand_computed_case() -> None:
    reference = np.zeros((1, 4, 4), dtype=np.uint8)
    test = reference.copy()
    test[0, 0, :] = 16  # 4 of 16 samples off by 16: MSE = 4 * 256 / 16 = 64
    # 10 * log10(255^2 / 64) = 10 * log10(1016.02) = 30.0690 dB
    assert psnr_frames(reference, test)[0] == pytest.approx(30.0690, abs=1e-4)


def test_identical_frames_are_capped_not_infinite() -> None:
    plane = np.full((2, 4, 4), 7, dtype=np.uint8)
    assert list(psnr_frames(plane, plane)) == [100.0, 100.0]


def test_sequence_psnr_is_the_mean_of_frame_psnrs() -> None:
    reference = np.zeros((2, 4, 4), dtype=np.uint8)
    test = reference.copy()
    test[0] = 1  # MSE 1 -> 48.13 dB
    test[1] = 2  # MSE 4 -> 42.11 dB
    chroma = np.zeros((2, 2, 2), dtype=np.uint8)
    result = psnr(Yuv420(reference, chroma, chroma), Yuv420(test, chroma, chroma + 1))
    assert result.y == pytest.approx((10 * math.log10(255**2) + 10 * math.log10(255**2 / 4)) / 2)
    assert result.v == pytest.approx(10 * math.log10(255**2))


def test_weighted_yuv_psnr_is_six_one_one() -> None:
    assert Psnr(40.0, 48.0, 32.0).yuv == pytest.approx((6 * 40 + 48 + 32) / 8)


def test_bd_rate_of_a_curve_shifted_by_ten_percent() -> None:
    kbps = [100.0, 200.0, 400.0, 800.0]
    db = [30.0, 33.0, 36.0, 39.0]
    assert bd_rate((kbps, db), ([k * 0.9 for k in kbps], db)) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate((kbps, db), ([k * 1.25 for k in kbps], db)) == pytest.approx(25.0, abs=1e-6)


def test_bd_psnr_of_a_curve_raised_by_one_db() -> None:
    kbps = [100.0, 200.0, 400.0, 800.0]
    db = [30.0, 33.0, 36.0, 39.0]
    assert bd_psnr((kbps, db), (kbps, [d + 1 for d in db])) == pytest.approx(1.0, abs=1e-6)


def test_bd_rate_without_overlap_is_nan() -> None:
    kbps = [100.0, 200.0, 400.0, 800.0]
    assert math.isnan(bd_rate((kbps, [30.0, 33, 36, 39]), (kbps, [50.0, 53, 56, 59])))


def test_vmaf_ranks_a_degraded_copy_below_the_original(tiny_sequence: Sequence) -> None:
    original = read_yuv(tiny_sequence)
    noisy_y = np.clip(
        original.y.astype(np.int16) + np.random.default_rng(0).integers(-20, 21, original.y.shape), 0, 255
    ).astype(np.uint8)
    args = (tiny_sequence.path, tiny_sequence.width, tiny_sequence.height, tiny_sequence.fps)
    clean = vmaf(args[0], original, *args[1:])
    degraded = vmaf(args[0], Yuv420(noisy_y, original.u, original.v), *args[1:])
    assert clean > 90
    assert degraded < clean - 5
