"""Codec comparison on the whole `test` split, all frames, in one run.

Builds the default sequences if needed, then runs x264, x265, SVT-AV1, libaom and VVenC at
the ladder QPs 22/27/32/37 and prints the table; time ratios against x264 come from this
one run. Writes benchmarks/results/codec_comparison.json and .png.

    .venv/bin/python benchmarks/codec_comparison.py [--sequences data/sequences]

Run it on an otherwise idle machine: encode times are wall-clock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnslim.cli import main


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    if not (args.sequences / "sequences.json").is_file() and main(["sequences", "--out", str(args.sequences)]):
        return 1
    return main(
        [
            "codecs",
            "--sequences",
            str(args.sequences),
            "--split",
            "test",
            "--codecs",
            "x264,x265,svtav1,aom,vvenc",
            "--qps",
            "22,27,32,37",
            "--json",
            str(args.results / "codec_comparison.json"),
            "--plot",
            str(args.results / "codec_comparison.png"),
        ]
    )


if __name__ == "__main__":
    sys.exit(run())
