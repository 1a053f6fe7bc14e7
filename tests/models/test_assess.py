import math

import pytest

from nnslim.models.assess import summarise
from nnslim.video.metrics import bd_rate


def _row(sequence: str, qp: int, kbps: float, codec: float, gain: float) -> dict[str, object]:
    return {
        "sequence": sequence,
        "qp": qp,
        "kbps": kbps,
        "psnr_y_codec": codec,
        "psnr_y_filtered": codec + gain,
        "gain_db": gain,
    }


def test_summary_gives_bd_rate_only_with_four_qps() -> None:
    ladder = [(22, 800.0, 40.0), (27, 400.0, 37.0), (32, 200.0, 34.0), (37, 100.0, 31.0)]
    rows = [_row("A", qp, kbps, psnr, 0.3) for qp, kbps, psnr in ladder] + [_row("B", 37, 50.0, 30.0, 0.1)]
    summary = summarise(rows)
    a, b = summary["per_sequence"]
    kbps = [100.0, 200.0, 400.0, 800.0]
    expected = bd_rate((kbps, [31.0, 34.0, 37.0, 40.0]), (kbps, [31.3, 34.3, 37.3, 40.3]))
    assert a["bd_rate"] == pytest.approx(expected) and a["bd_rate"] < 0
    assert a["bd_psnr"] == pytest.approx(0.3, abs=1e-6)
    assert math.isnan(b["bd_rate"]) and b["gain_db"] == pytest.approx(0.1)
    assert summary["mean"]["bd_rate"] == pytest.approx(expected)
    assert summary["mean"]["gain_db"] == pytest.approx((4 * 0.3 + 0.1) / 5)
