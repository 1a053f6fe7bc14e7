import json
from pathlib import Path

import numpy as np

from nnslim.evaluate.plots import plot_crops
from nnslim.evaluate.report import Section, Table, write_report


def test_report_renders_tables_and_inlines_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    plot_crops(
        {"a": rng.integers(0, 256, (16, 24), dtype=np.uint8), "b <&>": np.zeros((16, 24), np.uint8)}, tmp_path / "c.png"
    )
    table = Table(
        [{"name": "x264", "bd": -1.234, "n": 1234}, {"name": "vvenc", "bd": float("nan"), "n": 5}],
        [("name", "codec"), ("bd", "BD-rate (%)"), ("n", "points")],
        {"bd": "+.2f", "n": ","},
    )
    page = write_report(
        "demo <run>", [Section("Codecs", "a note", [table], [tmp_path / "c.png"])], {"x": 1}, tmp_path / "out"
    )
    text = page.read_text()
    assert "<h1>demo &lt;run&gt;</h1>" in text and "<td>-1.23</td>" in text and "<td>1,234</td>" in text
    assert "<td>n/a</td>" in text and 'src="data:image/png;base64,' in text and 'c.png"' not in text
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| x264 | -1.23 | 1,234 |" in markdown and "![c](c.png)" in markdown
    assert (tmp_path / "out" / "c.png").is_file()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["figures"] == {"x": 1}
