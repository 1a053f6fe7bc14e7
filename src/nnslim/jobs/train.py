"""Train a filter on the train split, and apply one to a decoded sequence."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from nnslim.adapt import encoder, update
from nnslim.errors import NnslimError
from nnslim.evaluate import runtime
from nnslim.io import require_writable_file
from nnslim.jobs.adapt import load_base
from nnslim.jobs.common import QUIET, Progress, check_qps, encode_cache
from nnslim.jobs.pack import read_nnsl
from nnslim.models import train as training
from nnslim.models.apply import LumaFilter, filter_yuv_file, plane_filter, runner_filter
from nnslim.models.filters import build
from nnslim.models.splits import Splits
from nnslim.video import content
from nnslim.video.yuv import Sequence, describe_yuv, parse_size


@dataclass(frozen=True)
class TrainRequest:
    """Train a filter.

    Attributes:
        settings: Training settings (architecture, codec, QPs, steps, batch, patch, learning
            rate, loss, seed, ...); the sequence names and ``init`` are filled in here.
        out: Filter file to write (.pt, with .json beside it).
        sequences: Folder with ``sequences.json``.
        validation: Train-split sequences held out for validation.
        train: Train on these train-split sequences only (all but ``validation`` when empty).
        init: Start from this filter's weights.
        resume: Continue from the checkpoint beside ``out``.
        cache: Encode cache.
    """

    settings: training.TrainConfig
    out: Path
    sequences: Path = Path("data/sequences")
    validation: tuple[str, ...] = ("Motorcycle",)
    train: tuple[str, ...] = ()
    init: Path | None = None
    resume: bool = False
    cache: Path | None = None


def _named(names: tuple[str, ...], available: list[Sequence], role: str) -> list[str]:
    unknown = sorted(set(names) - {s.name for s in available})
    if unknown:
        raise NnslimError(f"{role} sequence(s) {', '.join(unknown)} are not in the train split")
    return list(names)


StepCallback = Callable[[int, float, dict[str, float] | None], None]


@dataclass(frozen=True)
class TrainResult:
    """The trained filter.

    Attributes:
        out: The filter file (.pt, with .json beside it).
        description: Its JSON description (architecture, training settings, validation figures).
    """

    out: Path
    description: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.description


def train(request: TrainRequest, on_step: StepCallback | None = None, progress: Progress = QUIET) -> TrainResult:
    """Encode the training sequences (cached) and train.

    Raises:
        NnslimError: Bad settings, unknown sequences, or nothing left to train on.
    """
    config = request.settings
    build(config.arch)
    if config.loss not in ("mse", "l1"):
        raise NnslimError(f"--loss must be mse or l1, got {config.loss!r}")
    if not 0 <= 2 * config.margin < config.patch:
        raise NnslimError(f"--margin {config.margin} leaves nothing of a {config.patch}-pixel patch for the loss")
    check_qps(config.codec, config.qps)
    require_writable_file(request.out)
    available = list(content.select(content.load_manifest(request.sequences), "train"))
    validation = _named(request.validation, available, "validation")
    if request.train:
        names = _named(request.train, available, "training")
        if set(names) & set(validation):
            raise NnslimError("a sequence cannot be both trained and validated on")
        chosen = [s for s in available if s.name in names]
    else:
        chosen = [s for s in available if s.name not in validation]
    if not chosen:
        raise NnslimError(f"no train-split sequences left in {request.sequences} for training")
    if request.init:
        training.starting_weights(request.init, config.arch)
    held_out = tuple(s for s in available if s.name in validation)
    splits = Splits(
        config.codec, config.qps, {"train": tuple(chosen), "validation": held_out}, encode_cache(request.cache)
    )
    config = replace(
        config,
        train_sequences=tuple(s.name for s in chosen),
        validation_sequences=tuple(validation),
        init=str(request.init) if request.init else None,
    )
    progress.status("encoding the training sequences")
    train_pairs = splits.pairs("train", progress.status)
    val_pairs = splits.pairs("validation") if validation else []
    description = training.train(config, train_pairs, val_pairs, request.out, resume=request.resume, on_step=on_step)
    return TrainResult(request.out, description)


@dataclass(frozen=True)
class FilterRequest:
    """Apply a filter to a decoded .yuv.

    Attributes:
        model: Filter file.
        input: Decoded 8-bit 4:2:0 .yuv.
        out: Filtered .yuv to write.
        reference: Original .yuv, for PSNR before and after.
        size: WxH, unless the file names say it.
        qp: QP of the decoded video (needed for filters trained on several QPs).
        tile: Tile side in pixels (the runtime's own, ``runtime.DEFAULT_TILES``, when None).
        overlap: Context pixels around each tile.
        trust_factory: The user architecture the filter may name.
        update: A content-adaptive update (.nnsu) of this filter for this video: it gives the QP
            and the switch, and the default tiling is used, as the encoder used it.
        runtime: Where the filter runs (``evaluate.runtime.RUNTIMES``): ``torch`` or ``onnxruntime``
            (exported on the fly) for a filter file or an .nnsl file, the file's own for an
            .onnx file (``onnxruntime_int8`` for a model from ``nnslim deploy``); None: the default.
    """

    model: Path
    input: Path
    out: Path
    reference: Path | None = None
    size: str | None = None
    qp: int | None = None
    tile: int | None = None
    overlap: int = 16
    trust_factory: str | None = None
    update: Path | None = None
    runtime: str | None = None

    def tile_for(self, runtime_name: str) -> int:
        """The tile side: the one asked for, or the runtime's own."""
        return self.tile if self.tile is not None else runtime.DEFAULT_TILES[runtime_name]


@dataclass(frozen=True)
class FilterResult:
    """A filtered sequence.

    Attributes:
        model: The filter file.
        input: The decoded .yuv.
        qp: The QP the filter was told.
        runtime: Where it ran.
        figures: ``models.apply.filter_yuv_file``'s: frames, output, peak memory, and Y/U/V PSNR
            before and after (``psnr_before``, ``psnr_after``) when a reference was given.
    """

    model: Path
    input: Path
    qp: int
    runtime: str
    figures: dict[str, Any]

    @property
    def frames(self) -> int:
        return int(self.figures["frames"])

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model), "input": str(self.input), "qp": self.qp, "runtime": self.runtime,
            **self.figures,
        }  # fmt: skip


def _onnx_luma(request: FilterRequest) -> tuple[LumaFilter, int, str]:
    """The luma filter of an .onnx file in ONNX Runtime, the QP it runs at and its runtime.

    Raises:
        NnslimError: An update, a runtime other than the file's, or a QP filter without ``qp``.
    """
    if request.update is not None:
        raise NnslimError("an update applies to the filter it was made for (.pt or .nnsl), not to an .onnx file")
    own = runtime.onnx_runtime_of(request.model)
    if request.runtime not in (None, own):
        raise NnslimError(f"{request.model} runs in {own}, not {request.runtime}")
    session = runtime.onnx_session(request.model)
    if runtime.onnx_takes_qp(session) and request.qp is None:
        raise NnslimError("this filter takes the QP; give --qp")
    qp = request.qp if request.qp is not None else 0
    return runner_filter(runtime.onnx_runner(session, qp), request.tile_for(own), request.overlap), qp, own


def _in_runtime(model: nn.Module, qp: int, request: FilterRequest) -> LumaFilter:
    """The filter in the runtime asked for: PyTorch, or exported to ONNX Runtime in float32.

    Raises:
        NnslimError: ``onnxruntime_int8``, which needs a model made by ``nnslim deploy``.
    """
    if request.runtime in (None, "torch"):
        return plane_filter(model, qp, request.tile_for("torch"), request.overlap)
    if request.runtime == "onnxruntime_int8":
        raise NnslimError(f"make the int8 model first (nnslim deploy {request.model} --out X.onnx), then filter X.onnx")
    with tempfile.TemporaryDirectory(prefix="nnslim-filter-") as scratch:
        session = runtime.onnx_session(runtime.export_onnx(model, Path(scratch) / "filter.onnx"))
    return runner_filter(runtime.onnx_runner(session, qp), request.tile_for("onnxruntime"), request.overlap)


def _luma(request: FilterRequest, model: nn.Module, meta: dict[str, Any], decoded: Sequence) -> tuple[LumaFilter, int]:
    """The luma filter and the QP it runs at: the filter alone, or with its update for this video."""
    if request.update is None:
        trained_qps = meta.get("training", {}).get("qps", [])
        qp = request.qp if request.qp is not None else (trained_qps[0] if len(trained_qps) == 1 else None)
        if qp is None:
            raise NnslimError("this filter was trained on several QPs; give --qp")
        return _in_runtime(model, qp, request), qp
    if request.runtime not in (None, "torch"):
        raise NnslimError("with --update the filter runs as the encoder ran it, in PyTorch: leave --runtime alone")
    if request.tile not in (None, 256) or request.overlap != 16:
        raise NnslimError("with --update the filter runs as the encoder ran it: leave --tile and --overlap alone")
    try:
        coded = update.decode(read_nnsl(request.update), model, update.file_sha256(request.model))
    except NnslimError as exc:
        raise NnslimError(f"{request.update}: {exc}") from None
    if request.qp is not None and request.qp != coded.qp:
        raise NnslimError(f"{request.update}: it was made for QP {coded.qp}, not {request.qp}")
    try:
        encoder.check_frames(coded, decoded.frames, decoded.width, decoded.height)
    except NnslimError as exc:
        raise NnslimError(f"{request.update}: {exc}") from None
    return encoder.update_filter(model, coded), coded.qp


def apply(request: FilterRequest, on_frame: Callable[[], None] | None = None) -> FilterResult:
    """Filter a decoded sequence into a file; PSNR before and after when a reference is given.

    Raises:
        NnslimError: Unreadable files, mismatched sizes, a multi-QP filter without ``qp``, or an
            update made for another filter or video.
    """
    if request.runtime is not None:
        runtime.check_runtime(request.runtime)
    decoded = describe_yuv(request.input, parse_size(request.size) if request.size else None)
    reference = describe_yuv(request.reference, (decoded.width, decoded.height)) if request.reference else None
    if reference is not None and reference.frames < decoded.frames:
        raise NnslimError(
            f"{reference.path.name} has {reference.frames} frames, {decoded.path.name} has {decoded.frames}"
        )
    require_writable_file(request.out)
    if request.model.suffix == ".onnx":
        luma, qp, where = _onnx_luma(request)
    else:
        model, meta = load_base(request.model, request.trust_factory)
        luma, qp = _luma(request, model, meta, decoded)
        where = request.runtime or "torch"
    result = filter_yuv_file(luma, decoded, request.out, reference, on_frame=on_frame)
    return FilterResult(request.model, request.input, qp, where, result)
