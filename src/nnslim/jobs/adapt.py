"""Adapt a filter to each sequence it codes: an NNR-coded update and the switch, their bits counted.

Sequences run side by side in the sweep's executors (a local process pool, or Ray); a finished
one is kept in ``OUT/SEQ.json`` and skipped by a rerun. For each, the encoder fine-tunes what
``AdaptConfig.mode`` adapts on that sequence's own frames (per coding QP, or at all QPs at
once), then for each QP
chooses the update's NNR QP by rate-distortion, sets the switch, and writes
``OUT/SEQ_qpQP.nnsu``. Each QP is measured four ways: the codec alone, the base filter as it
is, the switch alone, and the switch with the update, each with its bits counted in the
bitrate, and summed up as BD-rates against the codec alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nnslim.adapt import encoder, switch, update
from nnslim.adapt.encoder import AdaptConfig
from nnslim.bitstream.pack import unpack
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes, atomic_write_json, json_safe, require_writable_dir
from nnslim.jobs.common import QUIET, Progress, check_qps, encode_cache
from nnslim.jobs.pack import read_nnsl
from nnslim.models.apply import filter_frames
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter
from nnslim.sweep.executors import local_slots, run_local, run_ray
from nnslim.video.metrics import bd_rate
from nnslim.video.yuv import parse_size

CURVES = ("base", "switch", "adapted")
"""The ways a sequence is measured against the codec alone."""


@dataclass(frozen=True)
class AdaptRequest:
    """Adapt a filter to each sequence of a split.

    Attributes:
        model: The base filter: a filter file (.pt) or an .nnsl file.
        out: Folder for the updates and each sequence's results.
        sequences: Folder with ``sequences.json``.
        config: How the encoder adapts.
        split: ``test`` (reported) or ``validation`` (where the method's settings are chosen).
        names: Only these sequences of the split.
        codec: Codec (the filter's own when None).
        qps: Coding QPs (the filter's own when empty).
        max_size: Largest frame size.
        frames: First frames of each sequence (all when None).
        cache: Encode cache.
        trust_factory: The user architecture the filter may name.
        ray: Run the sequences on Ray (``local``, ``auto`` or an address) instead of the local pool.
        workers: Local pool size (as many sequences as fit on the cores at ``config.threads`` when None).
    """

    model: Path
    out: Path
    sequences: Path = Path("data/sequences")
    config: AdaptConfig = field(default_factory=AdaptConfig)
    split: str = "test"
    names: tuple[str, ...] = ()
    codec: str | None = None
    qps: tuple[int, ...] = ()
    max_size: str | None = "416x240"
    frames: int | None = None
    cache: Path | None = None
    trust_factory: str | None = None
    ray: str | None = None
    workers: int | None = None


@dataclass(frozen=True)
class AdaptResult:
    """Per sequence and QP rows, per-sequence and mean BD-rates, and where the updates are.

    Attributes:
        model: The base filter.
        out: The output folder.
        split: The split measured.
        config: How the encoder adapted.
        rows: One per sequence and QP (``adapt_sequence``'s rows).
        per_sequence: Per sequence, ``bd_rate_base``, ``bd_rate_switch``, ``bd_rate_adapted``
            (each in percent against the codec alone, bits counted) and ``bd_rate_adapted_vs_base``.
        mean: The means of those, and ``update_share_qp37``.
        seconds: Time of the whole run.
    """

    model: Path
    out: Path
    split: str
    config: AdaptConfig
    rows: list[dict[str, Any]]
    per_sequence: list[dict[str, Any]]
    mean: dict[str, float]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return json_safe(
            {
                "model": str(self.model), "out": str(self.out), "split": self.split,
                "config": dataclasses.asdict(self.config), "mean": self.mean, "per_sequence": self.per_sequence,
                "rows": self.rows, "seconds": self.seconds,
            }
        )  # fmt: skip


def load_base(path: Path, trust_factory: str | None) -> tuple[nn.Module, dict[str, Any]]:
    """A base filter from a filter file or an .nnsl file (as a decoder holds it), with its description."""
    if path.suffix == ".nnsl":
        try:
            return unpack(read_nnsl(path), trust_factory)
        except NnslimError as exc:
            raise NnslimError(f"{path}: {exc}") from None
    return load_filter(path, trust_factory)


def _switch_only(
    sha: str, pair: LumaPairs, filtered: np.ndarray, block: int, lam: float, codec: str
) -> tuple[np.ndarray, int]:
    """The switch alone on the base filter's output: the decoder's output and the flags' signalled bytes."""
    flags = encoder.set_switch(pair.original, pair.decoded, filtered, block, lam)
    frames, height, width = pair.decoded.shape
    made = update.Update(sha, pair.name, codec, pair.qp, "none", np.zeros(0, np.float32), None, block, flags,
                         width, height, frames)  # fmt: skip
    return switch.switched(pair.decoded, filtered, flags, block), update.signalled_bytes(update.encode(made))


@dataclass(frozen=True)
class SequenceInputs:
    """What every worker gets once: the base filter, the settings, and each sequence's pairs.

    Attributes:
        base: The base filter.
        arch: Its architecture.
        sha: The SHA-256 of its file.
        pairs: Each sequence's pairs, by name.
        config: How the encoder adapts.
        codec: The codec.
    """

    base: nn.Module
    arch: ArchSpec
    sha: str
    pairs: dict[str, list[LumaPairs]]
    config: AdaptConfig
    codec: str


def adapt_sequence(inputs: SequenceInputs, name: str) -> dict[str, Any]:
    """Adapt to one sequence at every QP (in a worker); returns its rows, timings and update files by QP."""
    config, base, sha = inputs.config, inputs.base, inputs.sha
    pairs = inputs.pairs[name]
    start = time.perf_counter()
    raws = encoder.train_updates(base, inputs.arch, pairs, config)
    trained = time.perf_counter() - start
    rows, files = [], {}
    for pair in pairs:
        filtered = filter_frames(base, pair.decoded, pair.qp)
        lam = config.lambda_scale * encoder.hm_lambda(pair.qp)
        switched, switch_bytes = _switch_only(sha, pair, filtered, config.block, lam, inputs.codec)
        coded, trials = encoder.code_sequence_qp(base, sha, pair, filtered, raws[pair.qp], config, inputs.codec)
        files[pair.qp] = coded.data
        rows.append(
            {
                "sequence": name, "qp": pair.qp, "video_bytes": pair.video_bytes, "kbps": pair.kbps,
                "psnr_y_codec": encoder.psnr_y(pair.original, pair.decoded),
                "psnr_y_base": encoder.psnr_y(pair.original, filtered), "kbps_base": pair.kbps,
                "psnr_y_switch": encoder.psnr_y(pair.original, switched), "switch_bytes": switch_bytes,
                "kbps_switch": encoder.kbps_with(pair, switch_bytes),
                "psnr_y_adapted": encoder.psnr_y(pair.original, coded.output), "update_bytes": coded.signalled_bytes,
                "kbps_adapted": encoder.kbps_with(pair, coded.signalled_bytes),
                "update_share": coded.signalled_bytes / pair.video_bytes, "file_bytes": len(coded.data),
                "flags_on": coded.flags_on, "nnr_qp": min(trials, key=lambda t: t["cost"])["nnr_qp"],
                "trials": trials,
            }
        )  # fmt: skip
    seconds = time.perf_counter() - start
    return {"sequence": name, "rows": rows, "train_seconds": trained, "seconds": seconds, "files": files}


def bd_between(rows: list[dict[str, Any]], curve: str, anchor: str = "codec") -> float:
    """BD-rate (percent) of one curve against another over a sequence's QPs (NaN under four QPs)."""
    if len(rows) < 4:
        return math.nan
    kbps = {"codec": "kbps"} | {c: f"kbps_{c}" for c in CURVES}
    ordered = sorted(rows, key=lambda r: r["qp"])
    first = ([r[kbps[anchor]] for r in ordered], [r[f"psnr_y_{anchor}"] for r in ordered])
    second = ([r[kbps[curve]] for r in ordered], [r[f"psnr_y_{curve}"] for r in ordered])
    return bd_rate(first, second)


def mean_finite(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN when none is)."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(done: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per-sequence BD-rates and their means, and the update's share of the video bytes at the highest QP."""
    per_sequence = []
    for sequence in done:
        rows = sequence["rows"]
        top = max(rows, key=lambda r: r["qp"])
        per_sequence.append(
            {"sequence": sequence["sequence"]}
            | {f"bd_rate_{c}": bd_between(rows, c) for c in CURVES}
            | {"bd_rate_adapted_vs_base": bd_between(rows, "adapted", "base"),
               "update_share_top_qp": top["update_share"], "top_qp": top["qp"],
               "train_seconds": sequence["train_seconds"], "seconds": sequence["seconds"]}
        )  # fmt: skip
    keys = [*(f"bd_rate_{c}" for c in CURVES), "bd_rate_adapted_vs_base"]
    mean = {k: mean_finite([p[k] for p in per_sequence]) for k in keys}
    shares = [p["update_share_top_qp"] for p in per_sequence if p["top_qp"] == 37]
    mean["update_share_qp37"] = float(np.mean(shares)) if shares else math.nan
    return per_sequence, mean


def adapt(request: AdaptRequest, progress: Progress = QUIET) -> AdaptResult:
    """Adapt the filter to every chosen sequence of the split (resuming), and sum it up.

    Raises:
        NnslimError: Bad settings, an unreadable filter, a split other than validation or test,
            or test sequences that made the filter.
    """
    if request.split not in ("validation", "test"):
        raise NnslimError(f"--split must be validation or test, not {request.split!r}")
    start = time.perf_counter()
    base, meta = load_base(request.model, request.trust_factory)
    sha = update.file_sha256(request.model)
    training = meta.get("training", {})
    codec = request.codec or str(training.get("codec", ""))
    qps = request.qps or tuple(int(q) for q in training.get("qps", ()))
    check_qps(codec, qps)
    out = require_writable_dir(request.out, create=True)
    splits = splits_for(
        meta, request.sequences, parse_size(request.max_size) if request.max_size else None, request.frames,
        names=list(request.names) or None, coding=(codec, qps), cache=encode_cache(request.cache),
    )  # fmt: skip
    pairs = splits.pairs(request.split, progress.status)
    settings = {"model": str(request.model), "sha256": sha, "codec": codec, "qps": list(qps),
                "frames": request.frames, "config": dataclasses.asdict(request.config)}  # fmt: skip
    settings = json.loads(json.dumps(json_safe(settings)))  # as saved: tuples become lists
    by_name = {name: [p for p in pairs if p.name == name] for name in dict.fromkeys(p.name for p in pairs)}
    saved = {name: _saved(out / f"{name}.json", settings) for name in by_name}
    todo = [name for name, found in saved.items() if found is None]
    inputs = SequenceInputs(
        base, ArchSpec.from_dict(meta["arch"]), sha, {n: by_name[n] for n in todo}, request.config, codec
    )
    for name, outcome in _run(inputs, todo, request, progress):
        for qp, data in outcome.pop("files").items():
            atomic_write_bytes(out / f"{name}_qp{qp}.nnsu", data)
        for row in outcome["rows"]:
            row["update"] = str(out / f"{name}_qp{row['qp']}.nnsu")
        atomic_write_json(out / f"{name}.json", json_safe({"settings": settings, **outcome}))
        progress.note(_line(outcome))
        saved[name] = outcome
    done = [found for found in saved.values() if found is not None]
    per_sequence, mean = summarise(done)
    rows = [r for s in done for r in s["rows"]]
    return AdaptResult(request.model, out, request.split, request.config, rows, per_sequence, mean,
                       time.perf_counter() - start)  # fmt: skip


def _run(
    inputs: SequenceInputs, todo: list[str], request: AdaptRequest, progress: Progress
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each sequence's outcome, run side by side on the local pool or on Ray."""
    if not todo:
        return iter(())
    threads = request.config.threads or 1
    running: list[str] = []

    def started(name: str) -> None:
        running.append(name)
        progress.status(f"adapting {', '.join(running[-2:])} ({len(running)} of {len(todo)} started)")

    if request.ray:
        return run_ray(adapt_sequence, todo, inputs, threads, request.ray, started)
    return run_local(adapt_sequence, todo, inputs, request.workers or local_slots(threads), started)


def _saved(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """A finished sequence's results, when they were made with the same settings."""
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved if saved.get("settings") == settings else None


def _line(saved: dict[str, Any]) -> str:
    rows = saved["rows"]
    (entry,), _ = summarise([saved])
    return (
        f"{saved['sequence']}: BD-rate against the codec: base {entry['bd_rate_base']:+.2f}%, switch "
        f"{entry['bd_rate_switch']:+.2f}%, adapted {entry['bd_rate_adapted']:+.2f}% (update "
        f"{sum(r['update_bytes'] for r in rows):,} bytes over {len(rows)} QPs; {saved['seconds']:.0f} s)"
    )
