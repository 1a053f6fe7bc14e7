from pathlib import Path

from nnslim.evaluate.plots import plot_rd_curves


def test_rd_plot_is_a_png(tmp_path: Path) -> None:
    rows = [
        {"codec": c, "sequence": s, "kbps": k * f, "psnr_y": 30 + i}
        for c, f in (("x264", 1.0), ("x265", 0.8))
        for s in ("A", "B")
        for i, k in enumerate((100, 200, 400))
    ]
    path = tmp_path / "rd.png"
    plot_rd_curves(rows, path)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 10_000
