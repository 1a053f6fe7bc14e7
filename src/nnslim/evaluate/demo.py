"""The main job's settings and its report, assembled from the JSON files its steps wrote."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nnslim.evaluate.measure import frame_name
from nnslim.evaluate.plots import plot_crops, plot_gains, plot_pruning_steps, plot_rd_curves
from nnslim.evaluate.report import Section, Table, write_report
from nnslim.models.apply import WHOLE_FRAME, filter_plane
from nnslim.models.data import LumaPairs


@dataclass(frozen=True)
class DemoMode:
    """How much the demo does: retraining steps, frames measured, and timed repetitions and frame size."""

    name: str
    rounds: int
    finetune_steps: int
    compress_frames: int | None
    frames: int | None
    repetitions: int
    timed_frame: tuple[int, int]
    codecs: str
    adapt_steps: int

    def cuts(self) -> str:
        """What this mode leaves out of a full run, for the report."""
        frames = f"the first {self.frames} frames of each sequence" if self.frames else "every frame"
        trained = f"the first {self.compress_frames} frames" if self.compress_frames else "every frame"
        return (
            f"{self.name} mode: evaluations on {frames}; compression trains and validates on {trained} of each; "
            f"the full recipe shortened to {self.rounds} pruning rounds and "
            f"{self.finetune_steps} retraining steps per stage (the full-length bbc recipe runs 8 rounds of 1000 "
            f"steps); runtimes are the median of {self.repetitions} timed {self.timed_frame[0]}x{self.timed_frame[1]} "
            "frames, and the shipped slim filter's "
            f"quality only is measured; codecs {self.codecs}; content adaptation on {ADAPT_SEQUENCE} only (all its "
            f"frames), {self.adapt_steps} fine-tuning steps per update."
        )

    def recipe_toml(self) -> str:
        """The compression recipe: the `full` recipe's stages, shortened, for speed in int8 (where it is deployed)."""
        return (
            f'name = "full-{self.name}"\nobjective = "speed"\nruntime = "onnxruntime_int8"\n'
            f'[[stage]]\nkind = "iterate"\nrounds = {self.rounds}\nfraction = 0.25\n'
            f"[stage.finetune]\nsteps = {self.finetune_steps}\n"
            f'[[stage]]\nkind = "lowrank"\n[stage.finetune]\nsteps = {self.finetune_steps}\n'
            f'[[stage]]\nkind = "quantize"\nmethod = "uniform"\nbits = 8\n'
            f"[stage.finetune]\nsteps = {self.finetune_steps}\n"
        )


ADAPT_SEQUENCE = "Carphone"
"""The test sequence the demo adapts to: real camera footage, and the smallest."""

MODES = {
    "quick": DemoMode("quick", 1, 60, 16, 8, 1, (960, 540), "x264,x265", 20),
    "default": DemoMode("default", 2, 150, 32, 6, 2, (960, 540), "x264,x265,svtav1,aom,vvenc", 60),
    "full": DemoMode("full", 8, 1000, None, None, 5, (1920, 1080), "x264,x265,svtav1,aom,vvenc", 400),
}


def crop_panels(
    original_filter: nn.Module,
    decoded_filter: nn.Module,
    pair: LumaPairs,
    label: str,
    size: tuple[int, int] = (96, 64),
) -> dict[str, np.ndarray]:
    """Original / decoded / filtered / compressed-filtered crops of a pair's first frame.

    The crop is the window of ``size`` where the codec's error is largest, so artefacts show;
    ``label`` names the decoded panel (e.g. ``x265 QP 37``).
    """
    decoded, original = pair.decoded[0], pair.original[0]
    width, height = size
    error = np.abs(original.astype(np.int32) - decoded.astype(np.int32))
    best, top, left = -1, 0, 0
    for y in range(0, max(original.shape[0] - height, 0) + 1, height // 2):
        for x in range(0, max(original.shape[1] - width, 0) + 1, width // 2):
            total = int(error[y : y + height, x : x + width].sum())
            if total > best:
                best, top, left = total, y, x
    window = (slice(top, top + height), slice(left, left + width))
    return {
        "original": original[window],
        label: decoded[window],
        "+ filter": filter_plane(original_filter, decoded, pair.qp)[window],
        "+ compressed filter": filter_plane(decoded_filter, decoded, pair.qp)[window],
    }


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _codec_section(codecs: dict[str, Any], out: Path) -> Section:
    anchor = codecs["settings"]["anchor"]
    plot_rd_curves(codecs["rows"], out / "rd_codecs.png")
    columns = [("codec", "codec"), ("preset", "preset"), ("kbps", "mean kbit/s"), ("psnr_y", "mean Y-PSNR")]
    columns += [(f"bd_rate_vs_{anchor}", f"BD-rate vs {anchor} (%)"), ("encode_s", "encode s")]
    formats = {"kbps": ".1f", "psnr_y": ".2f", f"bd_rate_vs_{anchor}": "+.2f", "encode_s": ".2f"}
    note = (
        f"Measured in this run. Sequences {', '.join(codecs['settings']['sequences'])}; "
        f"QPs {codecs['settings']['qps']}."
    )
    return Section("Codec comparison", note, [Table(codecs["summary"], columns, formats)], [out / "rd_codecs.png"])


def _evaluation_section(evaluation: dict[str, Any], out: Path, title: str, source: str, plot: str) -> Section:
    perf, size = evaluation["performance"], evaluation["size"]
    rd_rows = []
    for row in perf["rows"]:
        for label, key in (
            ("codec alone", "psnr_y_codec"),
            ("+ filter", "psnr_y_original"),
            ("+ compressed filter", "psnr_y_reconstructed"),
        ):
            rd_rows.append({"codec": label, "sequence": row["sequence"], "kbps": row["kbps"], "psnr_y": row[key]})
    if len({r["qp"] for r in perf["rows"]}) > 1:
        plot_rd_curves(rd_rows, out / plot)
    else:
        gains = {
            label: [r[key] - r["psnr_y_codec"] for r in perf["rows"]]
            for label, key in (("+ filter", "psnr_y_original"), ("+ compressed filter", "psnr_y_reconstructed"))
        }
        plot_gains([r["sequence"] for r in perf["rows"]], gains, out / plot)
    sides, frame = ("original", "reconstructed"), frame_name(evaluation["runtime"])
    measures = [
        ("size (bytes)", size["original_fp32_bytes"], size["compressed_bytes"], ","),
        *(
            (label, perf[sides[0]]["mean"][key], perf[sides[1]]["mean"][key], fmt)
            for label, key, fmt in (("gain over codec, Y (dB)", "gain_db", "+.3f"), ("BD-rate (%)", "bd_rate", "+.2f"))
        ),
        *(
            (label, evaluation[group].get(sides[0], {}).get(key), evaluation[group].get(sides[1], {}).get(key), fmt)
            for label, group, key, fmt in (
                ("parameters", "complexity", "parameters", ","),
                ("kMAC per pixel", "complexity", "kmac_per_pixel", ".1f"),
                (f"PyTorch ms per {frame} frame", "runtime", "torch_ms", ".0f"),
                (f"ONNX Runtime ms per {frame} frame", "runtime", "onnxruntime_ms", ".0f"),
                (f"peak memory filtering {frame} (MiB)", "memory", "peak_rss_mib", ".0f"),
                ("parameter memory (bytes)", "memory", "parameter_bytes", ","),
            )
        ),
    ]
    rows = [{"measure": m, "original": _fmt(a, f), "compressed": _fmt(b, f)} for m, a, b, f in measures]
    table = Table(rows, [("measure", "measure"), ("original", "original (O)"), ("compressed", "decoded .nnsl (R)")])
    per_seq = [
        {
            "sequence": o["sequence"],
            "gain_o": o["gain_db"],
            "gain_r": r["gain_db"],
            "bd_o": o["bd_rate"],
            "bd_r": r["bd_rate"],
        }
        for o, r in zip(perf["original"]["per_sequence"], perf["reconstructed"]["per_sequence"], strict=True)
    ]
    seq_table = Table(
        per_seq,
        [
            ("sequence", "sequence"),
            ("gain_o", "gain O (dB)"),
            ("gain_r", "gain R (dB)"),
            ("bd_o", "BD-rate O (%)"),
            ("bd_r", "BD-rate R (%)"),
        ],
        {"gain_o": "+.3f", "gain_r": "+.3f", "bd_o": "+.2f", "bd_r": "+.2f"},
    )
    percent = 100.0 * size["compressed_bytes"] / size["original_fp32_bytes"]
    runtime = evaluation["runtime"]
    speed = (
        f"speedup {runtime['speedup_torch']:.2f}x in PyTorch, {runtime['speedup_onnxruntime']:.2f}x in ONNX Runtime"
        if runtime
        else "not timed in this run"
    )
    note = (
        f"{source} Size ratio {size['ratio']:.1f}x ({percent:.2f}% of the fp32 filter); "
        f"Y-PSNR loss {perf['loss_db']:+.3f} dB; {speed}. QPs {evaluation['qps']}."
    )
    return Section(title, note, [table, seq_table], [out / plot])


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def _lowrank_section(table: dict[str, Any]) -> Section:
    columns = [("variant", "variant"), ("size_pct", "model size %"), ("psnr", "Y-PSNR (dB)")]
    columns += [("runtime_pct", "runtime %")]
    formats = {"size_pct": ".0f", "psnr": ".2f", "runtime_pct": ".0f"}
    note = (
        "Read from the committed file benchmarks/results/lowrank_table.json (written by "
        "benchmarks/lowrank_table.py), not measured in this run. Seed 002's low-rank variant of the postfilter "
        "(layers 2 and 3 split at K = 32 and 24) beside the published table. Their PSNR is on their own test "
        "set; ours on our test split."
    )
    return Section(
        "Low-rank kernels (seed 002)",
        note,
        [
            Table(table["measured"], columns, formats, caption="measured here"),
            Table(table["published"], columns, formats, caption="published"),
        ],
    )


def _adapt_section(adapted: dict[str, Any]) -> Section:
    rows = [{**p, "share": 100 * p["update_share_top_qp"]} for p in adapted["per_sequence"]]
    columns = [("sequence", "sequence"), ("bd_rate_base", "base filter (%)"), ("bd_rate_switch", "switch (%)")]
    columns += [("bd_rate_adapted", "switch + update (%)"), ("share", "update + flags at the top QP (% of video)")]
    formats = {k: "+.2f" for k in ("bd_rate_base", "bd_rate_switch", "bd_rate_adapted")} | {"share": ".2f"}
    note = (
        "Measured in this run. The encoder adapts the filter compressed in this run (the .nnsl a decoder holds) to "
        f"each sequence ({adapted['config']['mode']}, {adapted['config']['steps']} steps) and sets a per-block "
        "switch; BD-rate against x265 alone, with every bit a codec carries of the update and the flags (their NNR "
        "data units and a mode byte) added to the video's."
    )
    return Section("Content adaptation: switch and update, bits counted", note, [Table(rows, columns, formats)])


def _deploy_section(deployed: dict[str, Any], evaluation: dict[str, Any]) -> Section:
    runtime, perf = evaluation["runtime"], evaluation["performance"]
    where = runtime["runtime"]
    rows = [
        {"filter": "original, PyTorch float32", "runtime": "torch", "ms": runtime["original"]["torch_ms"],
         "loss": 0.0, "bd_rate": perf["original"]["mean"]["bd_rate"],
         "bytes": evaluation["size"]["original_fp32_bytes"]},
        {"filter": "slim, int8 (nnslim deploy)", "runtime": where, "ms": runtime["reconstructed"][f"{where}_ms"],
         "loss": perf["loss_db"], "bd_rate": perf["reconstructed"]["mean"]["bd_rate"],
         "bytes": evaluation["size"]["compressed_bytes"]},
    ]  # fmt: skip
    columns = [("filter", "filter"), ("runtime", "runtime"), ("ms", f"ms per {frame_name(runtime)} frame")]
    columns += [("loss", "Y-PSNR loss on test (dB)"), ("bd_rate", "BD-rate (%)"), ("bytes", "file bytes")]
    formats = {"ms": ".0f", "loss": "+.3f", "bd_rate": "+.2f", "bytes": ","}
    kept = ", ".join(n["name"] for n in deployed["float_nodes"]) or "none"
    note = (
        "Measured in this run. The slim filter of this run as an int8 QDQ model in ONNX Runtime, calibrated on "
        f"training tiles; its loss against the slim float filter on validation {deployed['loss_db_validation']:+.3f} "
        f"dB (nodes kept float: {kept}); on test, against the original. Speedup over the original in PyTorch "
        f"{runtime['speedup_vs_torch_fp32']:.2f}x, each on its own tiles (the original on "
        f"{_tiles(runtime['tiles']['original'])}, the int8 model on {_tiles(runtime['tiles']['reconstructed'])})."
    )
    return Section("Deployment: int8 in ONNX Runtime", note, [Table(rows, columns, formats)])


def _tiles(side: int) -> str:
    return "whole frames" if side >= WHOLE_FRAME else f"{side}-pixel tiles"


def build_report(
    out: Path, title: str, crops: dict[str, np.ndarray] | None, lowrank: Path | None, cuts: str = ""
) -> Path:
    """Assemble the report from a demo folder's JSON files, drawing every figure from the numbers.

    Args:
        out: The demo folder.
        title: Page title.
        crops: Visual comparison panels, or None to keep an existing ``crops.png``.
        lowrank: The committed low-rank table, or None.
        cuts: What the demo's mode left out of a full run, said at the top of the report.
    """
    sections = []
    figures: dict[str, Any] = {}
    if cuts:
        sections.append(Section("What this run measured", cuts))
    codecs = _read(out / "codecs.json")
    if codecs:
        sections.append(_codec_section(codecs, out))
        figures["codecs"] = codecs.get("summary")
    steps = _read(out / "compress" / "steps.json")
    if steps:
        plot_pruning_steps(steps["steps"], out / "steps.png")
        recipe = steps["settings"]["recipe"]
        dropped = [f"step {i} ({s['kind']})" for i, s in enumerate(steps["steps"]) if s.get("outcome") == "dropped"]
        note = (
            f"Measured in this run. Parameters, Y-PSNR and ms per 1080p frame in {recipe['runtime']} at every "
            "compression step (seed 000's picture); each step timed in turns with the model before it, median of 5 "
            f"frames after a warm-up. Objective: {recipe['objective']}"
            + (f"; dropped: {', '.join(dropped)}." if dropped else "; no step dropped.")
        )
        sections.append(Section("Compression steps", note, images=[out / "steps.png"]))
        figures["steps"] = steps["steps"]
    evaluation, packed = _read(out / "evaluate.json"), _read(out / "pack.json")
    if evaluation:
        source = (
            "The filter compressed in this run by the shortened recipe, packed and decoded, measured in this run. "
            f"NNR QP {packed.get('chosen', {}).get('qp', 'n/a')}, chosen on validation."
        )
        heading = "Evaluation: compressed in this run"
        sections.append(_evaluation_section(evaluation, out, heading, source, "rd_filters.png"))
        figures["evaluation"] = {k: v for k, v in evaluation.items() if k != "performance"}
        figures["pack"] = {k: v for k, v in packed.items() if k != "trials"}
    shipped = _read(out / "evaluate_shipped.json")
    if shipped:
        source = (
            f"The shipped slim filter {Path(shipped['file']).name} (committed; made by the full-length bbc recipe, "
            "see models/SLIM.md), decoded and measured in this run on the same frames and QPs. Its speed and memory "
            "are left out to keep the demo short; `nnslim evaluate` measures them."
        )
        heading = "Evaluation: the shipped slim filter"
        sections.append(_evaluation_section(shipped, out, heading, source, "rd_shipped.png"))
        figures["evaluation_shipped"] = {k: v for k, v in shipped.items() if k != "performance"}
    deployed, int8 = _read(out / "deploy.json"), _read(out / "evaluate_int8.json")
    if deployed and int8:
        sections.append(_deploy_section(deployed, int8))
        figures["deploy"] = {"loss_db_validation": deployed["loss_db_validation"], "runtime": int8["runtime"]}
    adapted = _read(out / "adapt.json")
    if adapted:
        sections.append(_adapt_section(adapted))
        figures["adapt"] = adapted["mean"]
    if lowrank is not None and lowrank.is_file():
        sections.append(_lowrank_section(json.loads(lowrank.read_text())))
    if crops:
        plot_crops(crops, out / "crops.png")
    if (out / "crops.png").is_file():
        note = (
            "Measured in this run. First frame of a test sequence, where the codec's error is largest; "
            "pixels enlarged 3x."
        )
        sections.append(Section("Visual comparison", note, images=[out / "crops.png"]))
    return write_report(title, sections, figures, out / "report")
