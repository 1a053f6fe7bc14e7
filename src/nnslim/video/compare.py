"""The codec comparison: every codec at every QP on every sequence, with a resumable cache."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnslim.io import atomic_write_json, sha256_file
from nnslim.video.codecs import CodecSpec, encode
from nnslim.video.metrics import BD_METHOD, bd_psnr, bd_rate, psnr, vmaf
from nnslim.video.yuv import Sequence, read_yuv


@dataclass(frozen=True)
class Point:
    """One encode of the comparison: which sequence, codec and QP."""

    sequence: Sequence
    codec: CodecSpec
    qp: int


def measure(point: Point, frames: int | None, out_dir: Path, with_vmaf: bool = True) -> dict[str, Any]:
    """Encode, decode and score one point; return its row of figures.

    Args:
        point: The sequence, codec and QP.
        frames: Code only the first ``frames`` frames (all when None).
        out_dir: Where the bitstream goes.
        with_vmaf: Also compute VMAF (None otherwise).
    """
    seq, spec = point.sequence, point.codec
    coded = encode(seq, spec, point.qp, out_dir, frames)
    quality = psnr(read_yuv(seq, coded.frames), coded.decoded)
    score = vmaf(seq.path, coded.decoded, seq.width, seq.height, seq.fps) if with_vmaf else None
    return {
        "codec": spec.name,
        "standard": spec.standard,
        "preset": spec.preset,
        "encoder_version": coded.encoder_version,
        "sequence": seq.name,
        "size": seq.size,
        "fps": seq.fps,
        "frames": coded.frames,
        "qp": point.qp,
        "quantizer": coded.quantizer,
        "bits": coded.bits,
        "kbps": coded.kbps,
        "psnr_y": quality.y,
        "psnr_u": quality.u,
        "psnr_v": quality.v,
        "psnr_yuv": quality.yuv,
        "vmaf": score,
        "encode_s": coded.encode_wall_s,
        "encode_cpu_s": coded.encode_cpu_s,
        "decode_s": coded.decode_s,
        "bitstream": str(coded.bitstream),
    }


def _cache_folder(cache: Path, point: Point, frames: int | None) -> Path:
    seq = point.sequence
    content = seq.sha256 or sha256_file(seq.path)
    count = seq.frames if frames is None else min(frames, seq.frames)
    settings = hashlib.sha256("\0".join(point.codec.args).encode()).hexdigest()[:8]
    return cache / f"{seq.name}-{content[:12]}" / f"{point.codec.name}-{point.codec.preset}-{settings}-f{count}"


def cached_row(point: Point, frames: int | None, cache: Path) -> dict[str, Any] | None:
    """The row of a point finished earlier, or None (also when its bitstream is gone).

    The bitstream is looked up beside the row, so a cache folder may be moved or copied.
    """
    done = _cache_folder(cache, point, frames) / f"qp{point.qp}.json"
    if not done.is_file():
        return None
    row: dict[str, Any] = json.loads(done.read_text())
    row["bitstream"] = str(done.parent / Path(row["bitstream"]).name)
    return row if Path(row["bitstream"]).is_file() else None


def run_point(point: Point, frames: int | None, cache: Path, with_vmaf: bool = True) -> dict[str, Any]:
    """Measure one point, or reuse its row from the cache, so an interrupted comparison resumes.

    The bitstream and the row are moved into the cache only once complete.

    Args:
        point: What to encode.
        frames: Frames of the sequence to code (all when None).
        cache: Folder of finished rows and bitstreams.
        with_vmaf: Compute VMAF too.
    """
    row = cached_row(point, frames, cache)
    if row is not None:
        return row
    folder = _cache_folder(cache, point, frames)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        row = measure(point, frames, Path(scratch), with_vmaf)
        kept = folder / Path(row["bitstream"]).name
        shutil.move(row["bitstream"], kept)
    row["bitstream"] = str(kept)
    atomic_write_json(folder / f"qp{point.qp}.json", row)
    return row


def _nan_mean(values: list[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _curve(rows: list[dict[str, Any]], codec: str, sequence: str) -> tuple[list[float], list[float]]:
    points = sorted((r["kbps"], r["psnr_y"]) for r in rows if r["codec"] == codec and r["sequence"] == sequence)
    return [k for k, _ in points], [p for _, p in points]


def _ratio(pairs: list[tuple[dict[str, Any], dict[str, Any]]], key: str) -> float:
    anchor_total = sum(a[key] for a, _ in pairs)
    return sum(t[key] for _, t in pairs) / anchor_total if anchor_total else math.nan


def summarize(rows: list[dict[str, Any]], anchor: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-codec summary and per-sequence BD figures against an anchor codec.

    BD-rate and BD-PSNR compare Y-PSNR against kbps by Akima interpolation (NaN with
    fewer than four QPs or too little overlap). Time ratios are sums over the
    (sequence, QP) pairs that both codecs coded.

    Returns:
        (summary, per_sequence): one dict per codec, and one per (codec, sequence).
    """
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    sequences = list(dict.fromkeys(r["sequence"] for r in rows))
    by_key = {(r["codec"], r["sequence"], r["qp"]): r for r in rows}
    per_sequence = []
    for codec in codecs:
        for seq in sequences:
            ref, test = _curve(rows, anchor, seq), _curve(rows, codec, seq)
            enough = len(ref[0]) >= 4 and len(test[0]) >= 4
            per_sequence.append(
                {
                    "codec": codec,
                    "sequence": seq,
                    f"bd_rate_vs_{anchor}": bd_rate(ref, test) if enough else math.nan,
                    f"bd_psnr_vs_{anchor}": bd_psnr(ref, test) if enough else math.nan,
                }
            )
    summary = []
    for codec in codecs:
        mine = [r for r in rows if r["codec"] == codec]
        pairs = [
            (by_key[(anchor, r["sequence"], r["qp"])], r) for r in mine if (anchor, r["sequence"], r["qp"]) in by_key
        ]
        bd = [p for p in per_sequence if p["codec"] == codec]
        summary.append(
            {
                "codec": codec,
                "standard": mine[0]["standard"],
                "preset": mine[0]["preset"],
                "encoder_version": mine[0]["encoder_version"],
                "points": len(mine),
                "kbps": float(np.mean([r["kbps"] for r in mine])),
                "psnr_y": float(np.mean([r["psnr_y"] for r in mine])),
                "psnr_yuv": float(np.mean([r["psnr_yuv"] for r in mine])),
                "vmaf": _nan_mean([r["vmaf"] for r in mine]),
                "encode_s": sum(r["encode_s"] for r in mine),
                f"bd_rate_vs_{anchor}": _nan_mean([p[f"bd_rate_vs_{anchor}"] for p in bd]),
                f"bd_psnr_vs_{anchor}": _nan_mean([p[f"bd_psnr_vs_{anchor}"] for p in bd]),
                f"encode_time_vs_{anchor}": _ratio(pairs, "encode_s"),
                f"encode_cpu_vs_{anchor}": _ratio(pairs, "encode_cpu_s"),
                f"decode_time_vs_{anchor}": _ratio(pairs, "decode_s"),
            }
        )
    return summary, per_sequence


def comparison_report(rows: list[dict[str, Any]], anchor: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The comparison's JSON document: settings, rows, summary and per-sequence BD figures."""
    summary, per_sequence = summarize(rows, anchor)
    return {
        "settings": {**settings, "anchor": anchor, "bd_method": BD_METHOD, "bd_metric": "psnr_y vs kbps"},
        "rows": rows,
        "summary": summary,
        "per_sequence": per_sequence,
    }
