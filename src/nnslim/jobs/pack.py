"""Code a filter into an `.nnsl` file (searching the NNR QP on validation when a loss budget is given),
decode one, and describe one."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from nnslim.adapt import update
from nnslim.bitstream.container import DEFAULT_MAX_PARAMS, Limits, read
from nnslim.bitstream.pack import PackConfig, pack, summary, unpack
from nnslim.bitstream.rate import search_qp
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes, require_writable_dir, require_writable_file
from nnslim.jobs.common import QUIET, Progress, encode_cache, filter_path
from nnslim.models.apply import WHOLE_FRAME
from nnslim.models.data import LumaPairs
from nnslim.models.filters import parameter_count
from nnslim.models.splits import Splits, splits_for
from nnslim.models.train import load_filter, save_filter, validate, validate_file
from nnslim.video.yuv import parse_size


@dataclass(frozen=True)
class PackRequest:
    """Code a filter.

    Attributes:
        model: Filter file, or a compress output folder.
        out: .nnsl file to write.
        config: Coding settings (with ``max_loss``, its ``nnr_qp`` is searched).
        max_loss: The coarsest NNR QP within this Y-PSNR loss (dB) on validation; test reported.
        against: Measure the loss and the size against this filter (the original).
        sequences: Folder with ``sequences.json``.
        max_size: Test sequences up to WxH report the chosen file's loss.
        frames: First frames of each sequence measure the loss.
        frame_step: Every Nth of those frames measures the loss.
        cache: Encode cache.
        trust_factory: The user architecture the filters may name.
    """

    model: Path
    out: Path
    config: PackConfig = field(default_factory=PackConfig)
    max_loss: float | None = None
    against: Path | None = None
    sequences: Path = Path("data/sequences")
    max_size: str | None = "416x240"
    frames: int | None = None
    frame_step: int = 16
    cache: Path | None = None
    trust_factory: str | None = None


@dataclass(frozen=True)
class PackResult:
    """The written file and, after a search, how its NNR QP was chosen.

    Attributes:
        file: The .nnsl file.
        bytes: Its size.
        seconds: Time to pack (the search included).
        fp32_bytes: The float32 size of the reference filter (``against``, or the model).
        header_bytes: Bytes of the header and tensor table.
        entropy_bytes: Entropy estimate of the payload.
        config: The coding settings written.
        search: ``decided_on``, the validation and test sequences, the trials, the chosen QP,
            ``validation_loss_db`` and ``test_loss_db`` (empty without ``max_loss``).
        model: The filter packed.
    """

    file: Path
    bytes: int
    seconds: float
    fp32_bytes: int
    header_bytes: int
    entropy_bytes: float
    config: PackConfig
    search: dict[str, Any]
    model: Path

    @property
    def percent_of_fp32(self) -> float:
        return 100.0 * self.bytes / self.fp32_bytes

    def to_json(self) -> dict[str, Any]:
        config = dataclasses.asdict(self.config)
        return {
            "model": str(self.model),
            "config": config | {"qp": config["nnr_qp"]},
            **self.search,
            "file": str(self.file),
            "bytes": self.bytes,
            "seconds": self.seconds,
            "fp32_bytes": self.fp32_bytes,
            "percent_of_fp32": self.percent_of_fp32,
            "header_bytes": self.header_bytes,
            "entropy_bytes": self.entropy_bytes,
        }


def _search(
    request: PackRequest, model: nn.Module, meta: dict[str, Any], reference: nn.Module, progress: Progress
) -> tuple[bytes, dict[str, Any]]:
    """The coarsest NNR QP within the budget on validation, and its loss measured once on test."""
    assert request.max_loss is not None
    max_size = parse_size(request.max_size) if request.max_size else None
    splits: Splits = splits_for(meta, request.sequences, max_size, request.frames, cache=encode_cache(request.cache))
    validation = splits.pairs("validation", progress.status)
    measured = encode_cache(request.cache).parent / "psnr"
    reference_file = request.against or filter_path(request.model)

    def psnr(m: nn.Module, pairs: list[LumaPairs]) -> float:
        return validate(m, pairs, request.frame_step, WHOLE_FRAME)["psnr_y_filtered"]

    def reference_psnr_on(pairs: list[LumaPairs]) -> float:
        found = validate_file(reference_file, reference, pairs, request.frame_step, measured, WHOLE_FRAME)
        return found["psnr_y_filtered"]

    def decoded(packed: bytes) -> nn.Module:
        return unpack(packed, trusted_factory=request.trust_factory)[0]

    start = time.perf_counter()
    reference_psnr = reference_psnr_on(validation)
    progress.status("searching the NNR QP on validation")
    qp, data, trials = search_qp(
        lambda qp: pack(model, meta, dataclasses.replace(request.config, nnr_qp=qp)),
        decoded,
        lambda m: psnr(m, validation),
        reference_psnr,
        request.max_loss,
        on_trial=lambda t: progress.status(f"NNR QP {t['nnr_qp']}: {t['bytes']:,} bytes, loss {t['loss_db']:+.3f} dB"),
    )
    chosen = next(t for t in trials if t["nnr_qp"] == qp)
    search_seconds = time.perf_counter() - start
    test = splits.pairs("test", progress.status)
    progress.status("measuring the chosen file once on the test split")
    test_loss = reference_psnr_on(test) - psnr(decoded(data), test)
    tried = ", ".join(str(t["nnr_qp"]) for t in sorted(trials, key=lambda t: t["nnr_qp"]))
    progress.note(
        f"tried NNR QPs {tried}; chose {qp}, the coarsest within {request.max_loss} dB on validation: "
        f"validation loss {chosen['loss_db']:+.3f} dB, test loss {test_loss:+.3f} dB"
    )
    return data, {
        "decided_on": "validation",
        "validation_sequences": sorted({p.name for p in validation}),
        "test_sequences": sorted({p.name for p in test}),
        "frame_step": request.frame_step,
        "reference_psnr_y": reference_psnr,
        "trials": trials,
        "chosen": chosen,
        "validation_loss_db": chosen["loss_db"],
        "test_loss_db": test_loss,
        "search_seconds": search_seconds,
    }


def pack_file(request: PackRequest, progress: Progress = QUIET) -> PackResult:
    """Code a filter into an .nnsl file, at a given NNR QP or the coarsest within a loss budget.

    Raises:
        NnslimError: Bad settings, unreadable filters, or a budget with another coder than NNR.
    """
    model, meta = load_filter(filter_path(request.model), request.trust_factory)
    if request.max_loss is not None and request.config.coder != "nnr":
        raise NnslimError(f"--max-loss searches the NNR QP; it needs --coder nnr, not {request.config.coder}")
    if request.frame_step < 1:
        raise NnslimError(f"--frame-step must be 1 or more, not {request.frame_step}")
    require_writable_file(request.out)
    reference = load_filter(request.against, request.trust_factory)[0] if request.against else model
    start = time.perf_counter()
    search: dict[str, Any] = {}
    config = request.config
    if request.max_loss is None:
        data = pack(model, meta, config)
    else:
        data, search = _search(request, model, meta, reference, progress)
        config = dataclasses.replace(request.config, nnr_qp=search["chosen"]["nnr_qp"])
    seconds = time.perf_counter() - start
    atomic_write_bytes(request.out, data)
    info = summary(data, decode=True)
    return PackResult(
        request.out, len(data), seconds, 4 * parameter_count(reference), info["header_bytes"],
        info["entropy_bytes"], config, search, request.model,
    )  # fmt: skip


def read_nnsl(path: Path, max_params: int = DEFAULT_MAX_PARAMS) -> bytes:
    """The bytes of an .nnsl file, refused unread when larger than a file of ``max_params`` parameters can be.

    Raises:
        NnslimError: A missing or oversized file.
    """
    limits = Limits.for_params(max_params)
    if not path.is_file():
        raise NnslimError(f"{path}: no such file")
    if path.stat().st_size > limits.max_file_bytes:
        raise NnslimError(f"{path}: {path.stat().st_size} bytes is more than the limit of {limits.max_file_bytes}")
    return path.read_bytes()


@dataclass(frozen=True)
class UnpackRequest:
    """Decode an .nnsl file into a filter file.

    Attributes:
        file: The .nnsl file.
        out: Folder for ``slim.pt`` and ``slim.json``.
        max_params: Refuse filters of more parameters.
        trust_factory: The user architecture the file may name.
    """

    file: Path
    out: Path
    max_params: int = DEFAULT_MAX_PARAMS
    trust_factory: str | None = None


@dataclass(frozen=True)
class UnpackResult:
    """A decoded file.

    Attributes:
        file: The .nnsl file.
        out: The folder holding ``slim.pt`` and ``slim.json``.
        decode_seconds: Time to decode.
        description: The filter's description from the file's header.
    """

    file: Path
    out: Path
    decode_seconds: float
    description: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file), "out": str(self.out), "decode_seconds": self.decode_seconds,
            "description": self.description,
        }  # fmt: skip


def unpack_file(request: UnpackRequest) -> UnpackResult:
    """Decode the file and write the filter.

    Raises:
        NnslimError: A corrupt, hostile or untrusted file (the message names the file).
    """
    data = read_nnsl(request.file, request.max_params)
    start = time.perf_counter()
    try:
        model, description = unpack(data, request.trust_factory, max_params=request.max_params)
    except NnslimError as exc:
        raise NnslimError(f"{request.file}: {exc}") from None
    seconds = time.perf_counter() - start
    out = require_writable_dir(request.out, create=True)
    save_filter(model, out / "slim.pt", {"format": "nnslim-filter", "version": 1, **description})
    return UnpackResult(request.file, out, seconds, description)


@dataclass(frozen=True)
class InspectResult:
    """What an .nnsl file holds.

    Attributes:
        file: The file.
        summary: ``bitstream.pack.summary``'s tables: header, model description, chunks, tensors
            (with entropy estimates when decoded) and byte counts.
    """

    file: Path
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.file), **self.summary}


def inspect_file(path: Path, decode: bool = False, max_params: int = DEFAULT_MAX_PARAMS) -> InspectResult:
    """What an .nnsl file holds (``bitstream.pack.summary``).

    Raises:
        NnslimError: A corrupt or hostile file, or an update file (the message names the file).
    """
    data = read_nnsl(path, max_params)
    try:
        if read(data, Limits.for_params(max_params)).model.get("format") == update.FORMAT:
            raise NnslimError("a content-adaptive update, not a filter: it is applied by filter or evaluate --update")
        return InspectResult(path, summary(data, decode=decode, max_params=max_params))
    except NnslimError as exc:
        raise NnslimError(f"{path}: {exc}") from None
