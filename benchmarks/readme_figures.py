"""The README's measured figures, each read from a committed JSON file under benchmarks/results/.

Every number the README gives as a result is built here from the JSON a named command wrote;
``tests/test_readme.py`` fails when the README says anything else, so a stale figure cannot stay.

    .venv/bin/python benchmarks/readme_figures.py           # print the figures the README must hold
    .venv/bin/python benchmarks/readme_figures.py --check   # exit 1, naming each figure the README lacks
    .venv/bin/python benchmarks/readme_figures.py --card    # write models/SLIM.md, the slim filters' card
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from nnslim.io import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = {
    "postfilter_x265_qp37": "bbc",
    "postfilter_x265_qp22-37": "bbc",
    "inloop_x265_qp37": "recipes/bbc_inloop.toml",
}
"""Filters shipped with a slim `.nnsl` (``models/NAME.bbc.nnsl``), and the full-length bbc recipe that made it."""


@functools.cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


HEADER = (
    "| file | parameters | PyTorch speedup | bytes (% of fp32) | NNR QP | validation loss (dB) | "
    "test loss (dB) | evaluate: test loss (dB) | evaluate: test gain, BD-rate |\n"
    "|---|---|---|---|---|---|---|---|---|"
)
"""The table of shipped slim filters, the same in the README and in models/SLIM.md."""

COMMANDS = """\
nnslim compress models/{name}.pt --recipe {recipe} --max-loss 0.05 --threads 2 --out out/ship/bbc_{name} \\
    --json out/ship/bbc_{name}.json
nnslim pack out/ship/bbc_{name} --coder nnr --dependent --max-loss 0.05 --against models/{name}.pt \\
    --out models/{name}.bbc.nnsl --json benchmarks/results/pack_{name}.bbc.json
nnslim evaluate models/{name}.pt models/{name}.bbc.nnsl --json benchmarks/results/evaluate_{name}.bbc.json"""


def shipped_row(name: str) -> str:
    """One row of the README's table of shipped slim filters."""
    pack, evaluation = _read(f"pack_{name}.bbc.json"), _read(f"evaluate_{name}.bbc.json")
    complexity, runtime = evaluation["complexity"], evaluation["runtime"]
    before, after = complexity["original"]["parameters"], complexity["reconstructed"]["parameters"]
    mean = evaluation["performance"]["reconstructed"]["mean"]
    bd_rate = "n/a" if mean["bd_rate"] is None else f"{mean['bd_rate']:+.2f}%"
    cells = [
        f"`models/{name}.bbc.nnsl`",
        f"{after:,} ({1 - after / before:.1%} fewer)",
        f"{runtime['speedup_torch']:.2f}x",
        f"{pack['bytes']:,} ({pack['percent_of_fp32']:.2f}%)",
        str(pack["chosen"]["qp"]),
        f"{pack['validation_loss_db']:+.3f}",
        f"{pack['test_loss_db']:+.3f}",
        f"{evaluation['performance']['loss_db']:+.3f}",
        f"{mean['gain_db']:+.3f} dB, {bd_rate}",
    ]
    return "| " + " | ".join(cells) + " |"


def speed_line(results: str = "speed.json") -> str:
    """``benchmarks/speed.py``'s speedups of a shipped slim filter in every runtime, and the int8 peer's."""
    speed = _read(results)
    slim = speed["slim"][0]
    ratio = slim["versus_original"]
    original = speed["original"]
    vs_torch, int8_ms = slim["speedup_vs_torch_fp32"], slim["onnxruntime_int8"]["median_ms"]
    peer = original["torch"]["median_ms"] / original["onnxruntime_int8"]["median_ms"]
    return (
        f"{Path(slim['file']).name}: {ratio['speedup_torch']:.2f}x in PyTorch "
        f"({original['torch']['median_ms']:,.0f} to {slim['torch']['median_ms']:,.0f} ms), "
        f"{ratio['speedup_onnxruntime']:.2f}x in ONNX Runtime; as deployed in int8, "
        f"{vs_torch['onnxruntime_int8']:.2f}x over the original in PyTorch ({int8_ms:,.0f} ms) with "
        f"{slim['loss_db_test']:+.3f} dB Y-PSNR loss on test against the original; the peer, the original "
        f"quantized by ONNX Runtime's quantize_static alone: {peer:.2f}x, {original['loss_db_test']:+.3f} dB"
    )


def av1_psnr_range() -> str:
    """How much more mean Y-PSNR the AV1 encoders give than x265 at the same ladder QP."""
    rows = _read("codec_comparison.json")["rows"]
    psnr: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        psnr[(row["codec"], row["qp"])].append(row["psnr_y"])
    qps = sorted({qp for _, qp in psnr})
    more = [
        statistics.mean(psnr[(codec, qp)]) - statistics.mean(psnr[("x265", qp)])
        for codec in ("svtav1", "aom")
        for qp in qps
    ]
    return f"{min(more):.1f} to {max(more):.1f} dB more mean"


ADAPT_HEADER = (
    "| filter | sequence | base filter | switch | switch + update | update vs base | update + flags at QP 37 |\n"
    "|---|---|---|---|---|---|---|"
)
"""BD-rates against x265 alone of content adaptation (``benchmarks/adapt.py``), bits counted."""


def _pct(value: float | None, signed: bool = True) -> str:
    return "n/a" if value is None else f"{value:+.2f}%" if signed else f"{value:.2f}%"


ADAPT_FILTER = "postfilter_x265_qp22-37.pt"


def adapt_rows() -> str:
    """The test-split table of ``benchmarks/adapt.py``: per filter, each sequence and the mean."""
    lines = [ADAPT_HEADER]
    for name, result in _read("adapt.json")["filters"].items():
        for p in [*result["per_sequence"], {"sequence": "mean", **result["mean"]}]:
            share = p.get("update_share_top_qp", p.get("update_share_qp37"))
            keys = ("bd_rate_base", "bd_rate_switch", "bd_rate_adapted", "bd_rate_adapted_vs_base")
            cells = [f"`{name}`", p["sequence"], *(_pct(p[k]) for k in keys), _pct(100 * share, signed=False)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def adapt_choice() -> str:
    """What ``benchmarks/adapt_validation.py`` chose on the validation sequence."""
    chosen = _read("adapt_validation.json")
    modes = ", ".join(f"{m} {_pct(v['mean']['bd_rate_adapted'])}" for m, v in chosen["modes"].items())
    scale = chosen["lambda_scale"]
    base = _pct(next(iter(chosen["modes"].values()))["mean"]["bd_rate_base"])
    return (
        f"lambda_scale {scale:.1f}; on validation, the base filter alone {base}; switch + update: {modes}; "
        f"chosen: {chosen['chosen']}; chosen within the time budget: {chosen['chosen_in_budget']['trial']}"
    )


def adapt_training() -> str:
    """The shipped multi-QP filter's training time per test sequence (range) in ``benchmarks/adapt.py``, and where."""
    result = _read("adapt.json")
    seconds = [p["train_seconds"] for p in result["filters"][ADAPT_FILTER]["per_sequence"]]
    machine = result["machine"]
    return f"{min(seconds):.0f} to {max(seconds):.0f} s on {machine['threads']} threads of an {machine['cpu']}"


def adapt_step_speedup() -> str:
    """How much faster an adapt training step runs in channels-last layout (``benchmarks/adapt_step.py``), and where."""
    result = _read("adapt_step.json")
    machine = result["machine"]
    return (
        f"{result['speedup_channels_last']:.2f}x faster than in the default layout on {machine['threads']} threads "
        f"of an {machine['cpu']}"
    )


def _sent() -> list[dict[str, Any]]:
    """The rows of ``benchmarks/adapt.py`` (both filters) at which an update was sent."""
    filters = _read("adapt.json")["filters"].values()
    return [row for result in filters for row in result["rows"] if row["nnr_qp"] is not None]


def adapt_update_bytes() -> str:
    """The range of the bytes of the updates sent on the test split."""
    sizes = [row["update_bytes"] for row in _sent()]
    return f"{min(sizes)} to {max(sizes)} bytes"


def adapt_update_gain() -> str:
    """The range of what a sent update adds to the switch alone, in Y-PSNR."""
    gains = [row["psnr_y_adapted"] - row["psnr_y_switch"] for row in _sent()]
    return f"{min(gains):.2f} to {max(gains):.2f} dB"


def adapt_bits() -> str:
    """What the update's bytes cost the shipped multi-QP filter on test (``benchmarks/adapt_bits.py``)."""
    cost = _read("adapt_bits.json")["filters"][ADAPT_FILTER]
    fewer = ", ".join(f"{n} bytes fewer {_pct(v)}" for n, v in cost["fewer_bytes"].items())
    return f"as sent {_pct(cost['measured'])}; bits free {_pct(cost['bits_free'])}; each sent update {fewer}"


DEPLOY_HEADER = (
    "| int8 file | bytes | nodes kept float | validation loss (dB) | evaluate: test loss (dB) | "
    "int8 ms per 1080p frame | speedup over the original in PyTorch | BD-rate |\n|---|---|---|---|---|---|---|---|"
)


def deploy_rows() -> str:
    """The shipped slim filters deployed in int8: ``nnslim deploy``'s JSON and ``nnslim evaluate``'s on the .onnx."""
    lines = [DEPLOY_HEADER]
    for name in SHIPPED:
        deployed, evaluation = _read(f"deploy_{name}.bbc.json"), _read(f"evaluate_{name}.bbc.int8.json")
        runtime, mean = evaluation["runtime"], evaluation["performance"]["reconstructed"]["mean"]
        kept = deployed["float_nodes"]
        cells = [
            f"`models/{name}.bbc.int8.onnx`", f"{deployed['bytes']:,}",
            f"{len(kept)} ({sum(n['why'] == 'loss' for n in kept)} for the budget)",
            f"{deployed['loss_db_validation']:+.3f}", f"{evaluation['performance']['loss_db']:+.3f}",
            f"{runtime['reconstructed']['onnxruntime_int8_ms']:,.0f}", f"{runtime['speedup_vs_torch_fp32']:.2f}x",
            _pct(mean["bd_rate"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def demo_time() -> str:
    """The main job's wall time on this project's reference machine."""
    seconds = _read("demo.json")["seconds"]
    return f"{int(seconds // 60)} min {round(seconds % 60)} s"


def figures() -> list[str]:
    """Every figure the README must hold verbatim."""
    return [
        HEADER, *(shipped_row(name) for name in SHIPPED), speed_line(), speed_line("speed_inloop.json"),
        av1_psnr_range(), demo_time(),
        adapt_rows(), adapt_choice(), adapt_training(), adapt_step_speedup(), adapt_update_bytes(), adapt_update_gain(),
        adapt_bits(), deploy_rows(),
    ]  # fmt: skip


def missing(readme: str) -> list[str]:
    """The figures that the README text does not hold."""
    return [figure for figure in figures() if figure not in readme]


def card() -> str:
    """models/SLIM.md: the shipped slim filters, their figures, and the commands that remake them."""
    parts = [
        "# Model card: shipped slim filters\n",
        "Written by `benchmarks/readme_figures.py --card` from the JSON files under `benchmarks/results/`. "
        "Each `.nnsl` file is the filter of the same name compressed by a full-length `bbc` recipe "
        "within 0.05 dB of Y-PSNR on validation, then NNR-coded at the coarsest QP whose validation loss "
        "against the unpruned filter is at most 0.05 dB; the test split is measured once, after. "
        "The speedup is PyTorch's, per 1920x1080 frame, both filters timed in turns in one process "
        "(`nnslim evaluate`).\n",
        HEADER,
        *(shipped_row(name) for name in SHIPPED),
        "",
    ]
    for name in SHIPPED:
        parts += [f"## {name}.bbc.nnsl\n", "```", COMMANDS.format(name=name, recipe=SHIPPED[name]), "```\n"]
    return "\n".join(parts)


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="compare with README.md instead of printing")
    action.add_argument("--card", action="store_true", help="write models/SLIM.md")
    args = parser.parse_args()
    if args.card:
        atomic_write_bytes(ROOT / "models" / "SLIM.md", card().encode())
        return 0
    if not args.check:
        print("\n".join(figures()))
        return 0
    lacking = missing((ROOT / "README.md").read_text())
    for figure in lacking:
        print(f"README.md lacks: {figure}")
    return 1 if lacking else 0


if __name__ == "__main__":
    sys.exit(run())
