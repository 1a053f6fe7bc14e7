"""Deploy a filter as an int8 ONNX model for ONNX Runtime: calibrated on the training split, its Y-PSNR loss
against the float filter bounded on the validation split."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnslim.deploy.quantize import DeployConfig, Deployment, deploy_model
from nnslim.errors import NnslimError
from nnslim.evaluate.measure import check_match
from nnslim.io import atomic_write_bytes, json_safe, require_writable_file
from nnslim.jobs.adapt import load_base
from nnslim.jobs.common import QUIET, Progress, encode_cache, filter_path
from nnslim.models.splits import splits_for


@dataclass(frozen=True)
class DeployRequest:
    """Deploy a filter.

    Attributes:
        model: A filter file (.pt), a compress output folder, or an .nnsl file.
        out: The .onnx file to write.
        sequences: Folder with ``sequences.json``.
        config: The loss budget and quantization settings.
        frames: First frames of each validation sequence (all when None); calibration draws
            from every frame of the training sequences.
        cache: Encode cache.
        trust_factory: The user architecture the filter may name.
        against: Measure the loss against this filter (the original of a slim filter), so that the
            budget bounds the total loss; the filter itself when None.
    """

    model: Path
    out: Path
    sequences: Path = Path("data/sequences")
    config: DeployConfig = field(default_factory=DeployConfig)
    frames: int | None = None
    cache: Path | None = None
    trust_factory: str | None = None
    against: Path | None = None


@dataclass(frozen=True)
class DeployResult:
    """The written int8 model and what it costs.

    Attributes:
        model: The filter deployed.
        out: The .onnx file.
        config: The loss budget and quantization settings.
        deployment: The models tried and the one chosen.
        against: The filter the loss was measured against (None: the filter itself).
        calibration_sequences: The training sequences the calibration tiles came from.
        validation_sequences: The sequences the loss was measured on.
        seconds: Time of the whole job.
    """

    model: Path
    out: Path
    config: DeployConfig
    deployment: Deployment
    against: Path | None
    calibration_sequences: list[str]
    validation_sequences: list[str]
    seconds: float

    @property
    def bytes(self) -> int:
        return len(self.deployment.chosen.data)

    @property
    def loss_db(self) -> float:
        return self.deployment.chosen.loss_db

    def to_json(self) -> dict[str, Any]:
        chosen = self.deployment.chosen
        return json_safe(
            {
                "model": str(self.model), "out": str(self.out), "config": dataclasses.asdict(self.config),
                "bytes": self.bytes, "float_onnx_bytes": self.deployment.float_bytes,
                "loss_db_validation": self.loss_db, "reference_psnr_y": self.deployment.reference_psnr_y,
                "against": str(self.against) if self.against else None,
                "float_nodes": [dataclasses.asdict(n) for n in chosen.float_nodes],
                "calibration_tiles": self.deployment.calibration_tiles,
                "calibration_sequences": self.calibration_sequences,
                "validation_sequences": self.validation_sequences,
                "trials": [t.to_json() for t in self.deployment.trials], "seconds": self.seconds,
            }
        )  # fmt: skip


def deploy(request: DeployRequest, progress: Progress = QUIET) -> DeployResult:
    """Quantize a filter to int8 within the loss budget and write the ONNX model atomically.

    Raises:
        NnslimError: An unreadable filter, an unwritable output, a filter that records no
            training and validation sequences, a node ONNX Runtime cannot run in int8, or a loss
            over the budget (the last two unless ``config.float_fallback``).
    """
    start = time.perf_counter()
    require_writable_file(request.out)
    model, meta = load_base(filter_path(request.model), request.trust_factory)
    splits = splits_for(meta, request.sequences, frames=request.frames, cache=encode_cache(request.cache))
    calibration = splits.pairs("train", progress.status)
    validation = splits.pairs("validation", progress.status)
    reference = None
    if request.against is not None:
        reference, reference_meta = load_base(filter_path(request.against), request.trust_factory)
        try:
            check_match(reference_meta, meta)
        except NnslimError as exc:
            raise NnslimError(f"{request.against}: {exc}") from None
    deployment = deploy_model(model, calibration, validation, request.config, progress.status, reference)
    atomic_write_bytes(request.out, deployment.chosen.data)
    if deployment.chosen.float_nodes:
        kept = ", ".join(f"{n.name} ({n.why})" for n in deployment.chosen.float_nodes)
        progress.note(f"kept float: {kept}")
    return DeployResult(
        request.model, request.out, request.config, deployment, request.against, splits.names("train"),
        splits.names("validation"),
        time.perf_counter() - start,
    )  # fmt: skip
