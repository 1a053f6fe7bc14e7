"""The codec testbed's jobs: build or add sequences, encode one, compare codecs on a folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnslim.errors import NnslimError
from nnslim.io import require_writable_dir
from nnslim.jobs.common import QUIET, Progress, Recorded, encode_cache, record
from nnslim.video import content
from nnslim.video.codecs import get_codec
from nnslim.video.compare import Point, cached_row, comparison_report, measure, run_point
from nnslim.video.decode import decode_file
from nnslim.video.yuv import jvet_name, parse_size, to_8bit, write_yuv


def describe(seq: content.Sequence) -> dict[str, Any]:
    """A sequence as its manifest entry."""
    return {
        "name": seq.name,
        "file": str(seq.path),
        "width": seq.width,
        "height": seq.height,
        "fps": seq.fps,
        "frames": seq.frames,
        "split": seq.split,
        "source": seq.source,
        "sha256": seq.sha256,
    }


@dataclass(frozen=True)
class SequencesRequest:
    """Build the default sequences into ``out``, or add files to it.

    Attributes:
        out: Sequence folder (created if missing).
        only: Build only these default sequences.
        add: Files to add instead (.yuv, .y4m, .mp4).
        split: Split of added files.
        size: WxH of an added .yuv whose name does not say it.
        fps: Frame rate of added files.
        name: Manifest name of an added file.
    """

    out: Path
    only: tuple[str, ...] = ()
    add: tuple[Path, ...] = ()
    split: str = "test"
    size: str | None = None
    fps: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class SequencesResult:
    """The folder's sequences, and the default ones that did not reproduce their pinned hashes."""

    folder: Path
    sequences: tuple[content.Sequence, ...]
    unreproduced: tuple[str, ...] = ()
    added: bool = False

    def to_json(self) -> dict[str, Any]:
        listed = {"sequences": [describe(s) for s in self.sequences]}
        return listed if self.added else {"folder": str(self.folder), **listed, "unreproduced": list(self.unreproduced)}


def sequences(
    request: SequencesRequest, on_built: Callable[[int, int], None] = lambda done, total: None
) -> SequencesResult:
    """Build the default test sequences (or add the given files) into a folder.

    Args:
        request: What to build or add.
        on_built: Called with (built, total) after each default sequence.

    Raises:
        NnslimError: Unknown sequence names or unreadable files.
    """
    out = require_writable_dir(request.out, create=True)
    if request.add:
        size = parse_size(request.size) if request.size else None
        added = [content.import_video(p, out, request.split, size, request.fps, request.name) for p in request.add]
        return SequencesResult(out, tuple(added), added=True)
    recipes = content.DEFAULT_RECIPES
    if request.only:
        unknown = sorted(set(request.only) - {r.name for r in recipes})
        if unknown:
            raise NnslimError(
                f"unknown sequence(s) {', '.join(unknown)}; choose from {', '.join(r.name for r in recipes)}"
            )
        recipes = tuple(r for r in recipes if r.name in request.only)
    done = [0]

    def built_one(_: Any) -> None:
        done[0] += 1
        on_built(done[0], len(recipes))

    built = content.build_sequences(out, recipes, on_done=built_one)
    return SequencesResult(out, tuple(built), tuple(content.unreproduced(built, recipes)))


@dataclass(frozen=True)
class EncodeRequest:
    """Encode one sequence with one codec at one QP.

    Attributes:
        sequence: .yuv (JVET name or ``size``), .y4m or .mp4.
        codec: Codec name.
        qp: Ladder QP.
        out: Existing folder for the bitstream.
        size: WxH of a .yuv whose name does not say it.
        fps: Frame rate, if the file does not say it.
        frames: Code only the first N frames.
        preset: Encoder preset instead of the default.
        vmaf: Measure VMAF.
        save_decoded: Also write the decoded 8-bit .yuv into ``out``.
        store: Results store (the default one when None).
    """

    sequence: Path
    codec: str
    qp: int
    out: Path
    size: str | None = None
    fps: float | None = None
    frames: int | None = None
    preset: str | None = None
    vmaf: bool = True
    save_decoded: bool = False
    store: Path | None = None


def encode(request: EncodeRequest, progress: Progress = QUIET) -> Recorded:
    """Encode, decode and measure one point: its row (bitrate, PSNR, VMAF, times), as stored."""
    spec = get_codec(request.codec, request.preset)
    spec.quantizer(request.qp)
    out = require_writable_dir(request.out)
    seq = content.as_yuv(request.sequence, out, parse_size(request.size) if request.size else None, request.fps)
    progress.status(f"encoding {seq.name} with {spec.name} at QP {request.qp}")
    row = measure(Point(seq, spec, request.qp), request.frames, out, with_vmaf=request.vmaf)
    if request.save_decoded:
        decoded = decode_file(Path(row["bitstream"]), spec.muxer).video
        target = out / jvet_name(f"{seq.name}-{spec.name}-qp{request.qp}", seq.width, seq.height, seq.fps)
        write_yuv(target, decoded if decoded.y.dtype == np.uint8 else to_8bit(decoded))
        row["decoded"] = str(target)
    params = {
        "sequence": str(request.sequence),
        "codec": spec.name,
        "preset": spec.preset,
        "qp": request.qp,
        "frames": row["frames"],
    }
    return Recorded(record(request.store, "encode", params, row, [spec.name]), row)


@dataclass(frozen=True)
class CodecsRequest:
    """Compare codecs on a sequence folder.

    Attributes:
        sequences: Folder with ``sequences.json``.
        codecs: Codec names.
        qps: Ladder QPs.
        frames: Frames per sequence (all when None).
        split: Split to use (all when empty).
        names: Only these sequences.
        max_size: Skip sequences larger than WxH.
        anchor: Codec the BD-rates and time ratios refer to (x264 if compared, else the first).
        presets: Codec name to preset.
        vmaf: Measure VMAF.
        cache: Encode cache.
        store: Results store.
    """

    sequences: Path
    codecs: tuple[str, ...]
    qps: tuple[int, ...] = (22, 27, 32, 37)
    frames: int | None = None
    split: str = "test"
    names: tuple[str, ...] = ()
    max_size: str | None = None
    anchor: str | None = None
    presets: dict[str, str] = field(default_factory=dict)
    vmaf: bool = True
    cache: Path | None = None
    store: Path | None = None


def codecs(request: CodecsRequest, progress: Progress = QUIET) -> Recorded:
    """Encode every sequence with every codec at every QP (cached): the comparison report, as stored.

    Raises:
        NnslimError: Unknown codecs, QPs out of range, or no sequences selected.
    """
    specs = [get_codec(name, request.presets.get(name)) for name in request.codecs]
    if not request.qps:
        raise NnslimError("--qps is empty")
    for spec in specs:
        for qp in request.qps:
            spec.quantizer(qp)
    if request.frames is not None and request.frames <= 0:
        raise NnslimError("--frames must be positive")
    anchor = request.anchor or ("x264" if "x264" in request.codecs else request.codecs[0])
    if anchor not in request.codecs:
        raise NnslimError(f"anchor {anchor} is not among the codecs compared")
    max_size = parse_size(request.max_size) if request.max_size else None
    manifest = content.load_manifest(request.sequences)
    chosen = list(content.select(manifest, request.split, list(request.names) or None, max_size))
    if not chosen:
        raise NnslimError(f"no {request.split or ''} sequences in {request.sequences} match the selection")
    cache = encode_cache(request.cache)
    points = [Point(seq, spec, qp) for seq in chosen for spec in specs for qp in request.qps]
    rows = []
    for index, point in enumerate(points):
        cached = " (cached)" if cached_row(point, request.frames, cache) is not None else ""
        progress.status(f"{index + 1}/{len(points)} {point.sequence.name} {point.codec.name} QP {point.qp}{cached}")
        rows.append(run_point(point, request.frames, cache, request.vmaf))
    settings = {
        "sequences": [s.name for s in chosen],
        "split": request.split,
        "codecs": list(request.codecs),
        "qps": list(request.qps),
        "frames": request.frames,
        "presets": {s.name: s.preset for s in specs},
    }
    report = comparison_report(rows, anchor, settings)
    report["anchor"] = anchor
    return Recorded(record(request.store, "codecs", settings, report, list(request.codecs)), report)
