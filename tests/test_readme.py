"""The README's figures are the ones its committed results files hold (``benchmarks/readme_figures.py``)."""

import re
from pathlib import Path

from benchmarks.readme_figures import figures, missing

README = Path(__file__).resolve().parents[1] / "README.md"
MEASURED = re.compile(r"[+-]?\d[\d,]*\.\d+ ?(?:dB|%|x\b)")
SETTINGS = {"0.02 dB", "0.05 dB", "0.5 dB"}
"""Budgets and settings the README names, which are inputs, not results."""


def test_every_readme_figure_is_the_one_its_results_file_holds() -> None:
    assert missing(README.read_text()) == []


def test_the_readme_gives_no_measured_figure_that_no_results_file_backs() -> None:
    text = README.read_text()
    for figure in figures():
        text = text.replace(figure, "")
    assert sorted(set(MEASURED.findall(text)) - SETTINGS) == []


def test_a_stale_figure_is_caught() -> None:
    text = README.read_text()
    row = figures()[1]
    stale = row.replace("x |", "0x |", 1)
    assert missing(text.replace(row, stale)) == [row]
