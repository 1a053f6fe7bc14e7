"""The evaluation table of an original filter against the filter decoded from its `.nnsl` file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnslim.adapt import encoder, update
from nnslim.bitstream.container import BitstreamError
from nnslim.bitstream.pack import unpack
from nnslim.errors import NnslimError
from nnslim.evaluate.measure import EvaluateConfig, Reference, evaluate, evaluate_onnx
from nnslim.evaluate.runtime import check_runtime, onnx_runtime_of
from nnslim.jobs.adapt import bd_between, mean_finite
from nnslim.jobs.common import QUIET, Progress, check_qps, encode_cache, filter_path, record
from nnslim.jobs.pack import read_nnsl
from nnslim.models.data import LumaPairs
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter
from nnslim.video.yuv import parse_size


@dataclass(frozen=True)
class EvaluateRequest:
    """Evaluate a file against its original.

    Attributes:
        original: The uncompressed filter file (or a compress output folder).
        file: The .nnsl file; its decoded filter is measured.
        sequences: Folder with ``sequences.json``.
        names: Only these test sequences.
        max_size: Skip sequences larger than WxH.
        codec: Codec (the filter's own when None).
        qps: Ladder QPs (the filter's own when empty; four or more give BD-rates).
        frames: First frames of each sequence.
        measure: Timing and memory settings, and the most parameters the file may declare.
        cache: Encode cache.
        store: Results store.
        trust_factory: The user architecture the filters may name.
        update: A folder of content-adaptive updates of ``file`` (``nnslim adapt``'s
            ``SEQ_qpQP.nnsu``): each sequence is also measured with its own update, bits counted.
        runtime: The runtime ``file`` is for (``runtime.RUNTIMES``): an .onnx file (``nnslim
            deploy``'s) runs in its own, checked against this; an .nnsl file's filter is timed
            in ``torch`` and ``onnxruntime`` both.
    """

    original: Path
    file: Path
    sequences: Path = Path("data/sequences")
    names: tuple[str, ...] = ()
    max_size: str | None = "416x240"
    codec: str | None = None
    qps: tuple[int, ...] = ()
    frames: int | None = None
    measure: EvaluateConfig = field(default_factory=EvaluateConfig)
    cache: Path | None = None
    store: Path | None = None
    trust_factory: str | None = None
    update: Path | None = None
    runtime: str | None = None


@dataclass(frozen=True)
class EvaluateResult:
    """The table (``size``, ``performance``, ``complexity``, ``runtime``, ``memory``) and what it was measured on."""

    params: dict[str, Any]
    table: dict[str, Any]
    run_id: int

    @property
    def loss_db(self) -> float:
        return float(self.table["performance"]["loss_db"])

    def to_json(self) -> dict[str, Any]:
        return {**self.params, "run_id": self.run_id, **self.table}


def evaluate_file(request: EvaluateRequest, progress: Progress = QUIET) -> EvaluateResult:
    """Measure the original and the decoded filter side by side on the test split.

    Raises:
        NnslimError: A missing, corrupt or mismatched file, or sequences that made the filter.
    """
    original_file = filter_path(request.original)
    original, meta = load_filter(original_file, request.trust_factory)
    if not request.file.is_file():
        raise NnslimError(f"{request.file}: no such file")
    training = meta.get("training", {})
    codec = request.codec or training.get("codec", "x265")
    qps = check_qps(codec, request.qps or tuple(training.get("qps", ())))
    max_size = parse_size(request.max_size) if request.max_size else None
    names = list(request.names) or None
    cache = encode_cache(request.cache)
    splits = splits_for(
        meta, request.sequences, max_size, request.frames, names=names, coding=(codec, qps), cache=cache
    )
    _check_runtime(request)
    pairs = splits.pairs("test", progress.status)
    reference = Reference(original, meta, original_file, cache.parent / "psnr")
    if request.file.suffix == ".onnx":
        table = evaluate_onnx(reference, request.file, pairs, request.measure, progress.status)
    else:
        packed = read_nnsl(request.file, request.measure.max_params)
        try:
            table = evaluate(reference, packed, pairs, request.measure, progress.status, request.trust_factory)
        except BitstreamError as exc:
            raise NnslimError(f"{request.file}: {exc}") from None
    if request.update is not None:
        table["adapted"] = _adapted(request, packed, pairs, table["performance"]["rows"], progress)
    params = {
        "original": str(request.original),
        "file": str(request.file),
        "codec": codec,
        "qps": list(qps),
        "sequences": splits.names("test"),
        "frames": request.frames,
    }
    return EvaluateResult(params, table, record(request.store, "evaluate", params, table, [codec]))


def _check_runtime(request: EvaluateRequest) -> None:
    """Refuse a runtime the file cannot run in, and an update of an .onnx file."""
    onnx_file = request.file.suffix == ".onnx"
    if request.update is not None and onnx_file:
        raise NnslimError("--update applies to the .nnsl file the updates were made for, not to an .onnx file")
    if request.runtime is None:
        return
    check_runtime(request.runtime)
    own = onnx_runtime_of(request.file) if onnx_file else None
    if onnx_file and request.runtime != own:
        raise NnslimError(f"{request.file} runs in {own}, not {request.runtime}")
    if not onnx_file and request.runtime == "onnxruntime_int8":
        raise NnslimError(f"make the int8 model first (nnslim deploy {request.file} --out X.onnx); evaluate X.onnx")


def _adapted(
    request: EvaluateRequest, packed: bytes, pairs: list[LumaPairs], rows: list[dict[str, Any]], progress: Progress
) -> dict[str, Any]:
    """Each sequence and QP with its own update of the decoded filter (bits counted), and the BD-rates.

    Raises:
        NnslimError: A missing update, or one made for another filter, sequence, QP or video.
    """
    assert request.update is not None
    base, _ = unpack(packed, request.trust_factory, max_params=request.measure.max_params)
    sha = update.file_sha256(request.file)
    measured = {(r["sequence"], r["qp"]): r for r in rows}
    adapted = []
    for pair in pairs:
        path = request.update / f"{pair.name}_qp{pair.qp}.nnsu"
        progress.status(f"{pair.name} QP {pair.qp}: with its update")
        try:
            data = read_nnsl(path)
            coded = update.decode(data, base, sha)
            if (coded.sequence, coded.qp) != (pair.name, pair.qp):
                raise NnslimError(f"it was made for {coded.sequence} at QP {coded.qp}")
            output = encoder.apply_decoded(base, coded, pair.decoded)
        except NnslimError as exc:
            raise NnslimError(f"{path}: {exc}") from None
        sent = update.signalled_bytes(data)
        row = measured[(pair.name, pair.qp)]
        adapted.append(
            {
                "sequence": pair.name, "qp": pair.qp, "kbps": pair.kbps, "psnr_y_codec": row["psnr_y_codec"],
                "kbps_base": pair.kbps, "psnr_y_base": row["psnr_y_reconstructed"], "update_bytes": sent,
                "kbps_adapted": encoder.kbps_with(pair, sent), "psnr_y_adapted": encoder.psnr_y(pair.original, output),
            }
        )  # fmt: skip
    per_sequence = []
    for name in dict.fromkeys(r["sequence"] for r in adapted):
        mine = [r for r in adapted if r["sequence"] == name]
        per_sequence.append(
            {"sequence": name, "bd_rate_adapted": bd_between(mine, "adapted"),
             "bd_rate_adapted_vs_base": bd_between(mine, "adapted", "base")}
        )  # fmt: skip
    keys = ("bd_rate_adapted", "bd_rate_adapted_vs_base")
    mean = {k: mean_finite([p[k] for p in per_sequence]) for k in keys}
    return {"updates": str(request.update), "rows": adapted, "per_sequence": per_sequence, "mean": mean}
