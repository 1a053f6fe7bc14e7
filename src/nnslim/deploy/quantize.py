"""A filter as an int8 QDQ ONNX model: calibrated on training tiles, its Y-PSNR loss bounded on validation.

ONNX Runtime's own quantizer does the work (``quantize_static``, QDQ form, per-channel int8
weights, uint8 activations, min-max calibration). Calibration runs once; its ranges are kept in
ONNX Runtime's calibration cache, so that quantizing again with other nodes kept float costs
only the graph rewrite. When int8 loses more than the budget, each quantized node is kept float
in turn and the one whose float form raises the output's SQNR most (against the float model, on
validation tiles) is the one that loses most.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from torch import nn

from nnslim.deploy.calibration import Feed, FeedReader, tile_feeds
from nnslim.deploy.graph import INT8_OPS, describe, image_nodes, prepare, unsupported_nodes
from nnslim.deploy.loss import mean_psnr_y, output_sqnr, outputs
from nnslim.deploy.qat import QatConfig, quantization_aware
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import onnx_runner, onnx_session
from nnslim.models.apply import torch_runner
from nnslim.models.data import LumaPairs
from nnslim.models.filters import takes_qp

NAMED = 3
"""Nodes named when int8 loses too much."""


@dataclass(frozen=True)
class DeployConfig:
    """How a filter is quantized and checked.

    Attributes:
        max_loss_db: The most Y-PSNR (dB) the int8 model may lose against the float filter on validation.
        float_fallback: Keep float the nodes ONNX Runtime cannot run in int8, and the nodes that lose
            most until the loss is within the budget, instead of refusing.
        calibration_tiles: Training tiles the activation ranges are calibrated on.
        tile: Side of the calibration and ranking tiles.
        ranking_tiles: Validation tiles that rank the nodes by what they lose.
        frame_step: Every this many validation frames measure the loss.
        seed: Seed of the tile draws.
        threads: ONNX Runtime's intra-op threads (every core when None).
        calibration: How activation ranges are set from the calibration tiles: ``minmax`` (the
            extremes) or ``percentile`` (the 0.001st and 99.999th percentiles, so that a few outliers
            do not coarsen every other value's step).
        qat: Quantization-aware fine-tuning before export (none by default).
    """

    max_loss_db: float = 0.05
    float_fallback: bool = False
    calibration_tiles: int = 64
    tile: int = 128
    ranking_tiles: int = 8
    frame_step: int = 16
    seed: int = 0
    threads: int | None = None
    calibration: str = "percentile"
    qat: QatConfig = field(default_factory=QatConfig)


CALIBRATIONS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}


@dataclass(frozen=True)
class FloatNode:
    """A node left in float, and why: ``no int8 operator`` in ONNX Runtime, or ``loss`` (kept float for the budget)."""

    name: str
    op_type: str
    why: str


@dataclass(frozen=True)
class Trial:
    """One int8 model tried: the nodes it keeps float, its loss on validation and its bytes.

    Attributes:
        float_nodes: The nodes left in float.
        loss_db: Its Y-PSNR loss against the float filter on validation.
        data: The int8 QDQ ONNX model.
        sqnr_gain_db: For a node kept float to meet the budget, the output SQNR it gained (``rank_nodes``).
    """

    float_nodes: tuple[FloatNode, ...]
    loss_db: float
    data: bytes = field(repr=False)
    sqnr_gain_db: float | None = None

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"float_nodes": [n.name for n in self.float_nodes], "loss_db": self.loss_db}
        return found if self.sqnr_gain_db is None else {**found, "sqnr_gain_db": self.sqnr_gain_db}


@dataclass(frozen=True)
class Deployment:
    """The int8 model chosen, and what it costs.

    Attributes:
        trials: Every model tried, in order; the last is the one chosen.
        float_bytes: Size of the float ONNX model it was quantized from.
        reference_psnr_y: The reference filter's Y-PSNR on validation (PyTorch): the float filter's, or
            the original's it is measured against.
        calibration_tiles: Training tiles it was calibrated on.
    """

    trials: tuple[Trial, ...]
    float_bytes: int
    reference_psnr_y: float
    calibration_tiles: int

    @property
    def chosen(self) -> Trial:
        return self.trials[-1]


@dataclass(frozen=True)
class Quantizer:
    """Quantizes one pre-processed float model with different nodes kept float, calibrated once.

    Attributes:
        prepared: The float model (``graph.prepare``).
        folder: Scratch folder; ONNX Runtime's calibration cache is ``calibration.json`` there.
        calibration: The calibration feeds.
        method: How ranges are set from them (``DeployConfig.calibration``).
        threads: ONNX Runtime's intra-op threads for the sessions it opens.
    """

    prepared: Path
    folder: Path
    calibration: Sequence[Feed]
    method: str
    threads: int | None = None

    def quantize(self, keep_float: Sequence[str], out: Path) -> Path:
        """Write the int8 QDQ model with the named nodes kept float to ``out``.

        Raises:
            NnslimError: ONNX Runtime's quantizer fails.
        """
        try:
            quantize_static(
                str(self.prepared),
                str(out),
                FeedReader(self.calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(keep_float),
                calibrate_method=CALIBRATIONS[self.method],
                calibration_cache_path=self.folder / "calibration.json",
            )
        except Exception as exc:  # onnxruntime's errors share no base class below Exception
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NnslimError(f"ONNX Runtime's quantizer failed: {reason}") from None
        return out

    def psnr_y(self, keep_float: Sequence[str], pairs: Sequence[LumaPairs], frame_step: int) -> tuple[float, bytes]:
        """The int8 model's mean Y-PSNR (``mean_psnr_y``) and its bytes."""
        path = self.quantize(keep_float, self.folder / "trial.onnx")
        session = onnx_session(path, self.threads)
        return mean_psnr_y(lambda qp: onnx_runner(session, float(qp)), pairs, frame_step), path.read_bytes()


@dataclass(frozen=True)
class Check:
    """Validation frames and the float filter's Y-PSNR on them: what measures an int8 model.

    Attributes:
        quantizer: Makes the int8 models.
        pairs: The validation frames.
        reference_psnr_y: The float filter's mean Y-PSNR on them.
        frame_step: Every this many frames are measured.
    """

    quantizer: Quantizer
    pairs: Sequence[LumaPairs]
    reference_psnr_y: float
    frame_step: int

    def trial(self, float_nodes: tuple[FloatNode, ...], sqnr_gain_db: float | None = None) -> Trial:
        """The int8 model with these nodes float, measured."""
        psnr, data = self.quantizer.psnr_y([n.name for n in float_nodes], self.pairs, self.frame_step)
        return Trial(float_nodes, self.reference_psnr_y - psnr, data, sqnr_gain_db)


def rank_nodes(
    quantizer: Quantizer, candidates: Sequence[str], keep_float: Sequence[str], feeds: Sequence[Feed]
) -> list[tuple[str, float]]:
    """What each candidate node loses: the output SQNR gained when it, too, is kept float.

    Each candidate is kept float in turn on top of ``keep_float``; the output's SQNR against the
    float model on ``feeds`` is compared with that of the model with only ``keep_float`` float.

    Returns:
        ``(node, gain in dB)``, the largest gain first.
    """
    reference = outputs(onnx_session(quantizer.prepared, quantizer.threads), feeds)
    candidate = quantizer.folder / "candidate.onnx"

    def sqnr(float_nodes: Sequence[str]) -> float:
        session = onnx_session(quantizer.quantize(float_nodes, candidate), quantizer.threads)
        return output_sqnr(reference, session, feeds)

    base = sqnr(keep_float)
    gains = [(name, sqnr([*keep_float, name]) - base) for name in candidates]
    return sorted(gains, key=lambda gain: -gain[1])


def _refuse_bad_settings(config: DeployConfig) -> None:
    if config.max_loss_db < 0:
        raise NnslimError(f"the loss budget must be 0 dB or more, not {config.max_loss_db}")
    if config.frame_step < 1:
        raise NnslimError(f"frame step must be at least 1, not {config.frame_step}")
    if min(config.calibration_tiles, config.ranking_tiles, config.tile) < 1:
        raise NnslimError("tile counts and the tile side must be at least 1")
    if config.calibration not in CALIBRATIONS:
        raise NnslimError(f"calibration must be one of {', '.join(CALIBRATIONS)}, not {config.calibration!r}")
    if config.qat.steps < 0 or not config.qat.lr > 0:
        raise NnslimError("fine-tuning steps must be 0 or more and its learning rate above 0")


def _quiet(_: str) -> None:
    return None


def within_budget(
    check: Check,
    first: Trial,
    candidates: Sequence[onnx.NodeProto],
    feeds: Sequence[Feed],
    config: DeployConfig,
    status: Callable[[str], None] = _quiet,
) -> list[Trial]:
    """Keep float, one at a time, the node that loses most, until the loss is within the budget.

    Args:
        check: Measures each model on validation.
        first: The model tried first.
        candidates: The nodes that may be kept float.
        feeds: Validation tiles that rank the nodes (``rank_nodes``).
        config: The budget, and whether to fall back at all.
        status: Called with what it is doing.

    Returns:
        The models tried, ``first`` first; the last is within the budget.

    Raises:
        NnslimError: Over the budget without ``config.float_fallback`` (naming the nodes that lose
            most), or over it even with every candidate float (found before any ranking).
    """
    trials = [first]
    if first.loss_db > config.max_loss_db and config.float_fallback:
        status("measuring the model with every node float, to see whether the budget can be met at all")
        floor = check.trial((*first.float_nodes, *(FloatNode(n.name, n.op_type, "loss") for n in candidates)))
        if floor.loss_db > config.max_loss_db:
            raise NnslimError(
                f"the {config.max_loss_db} dB budget cannot be met: even with every int8 node kept float the model "
                f"loses {floor.loss_db:.3f} dB of Y-PSNR on validation"
            )
    while trials[-1].loss_db > config.max_loss_db:
        kept = trials[-1].float_nodes
        names = [n.name for n in kept]
        remaining = {n.name: n.op_type for n in candidates if n.name not in names}
        loss = trials[-1].loss_db
        status(f"int8 loses {loss:.3f} dB; ranking {len(remaining)} nodes on validation tiles")
        ranking = rank_nodes(check.quantizer, list(remaining), names, feeds)
        if not config.float_fallback:
            worst = ", ".join(f"{name} ({gain:+.2f} dB)" for name, gain in ranking[:NAMED])
            raise NnslimError(
                f"int8 loses {loss:.3f} dB of Y-PSNR on validation, over the {config.max_loss_db} dB budget; the "
                f"nodes that lose most (output SQNR gained when kept float): {worst}; --float-fallback keeps them "
                "in float"
            )
        name, gain = ranking[0]
        trials.append(check.trial((*kept, FloatNode(name, remaining[name], "loss")), gain))
    return trials


def deploy_model(
    model: nn.Module,
    calibration: Sequence[LumaPairs],
    validation: Sequence[LumaPairs],
    config: DeployConfig,
    status: Callable[[str], None] = _quiet,
    against: nn.Module | None = None,
) -> Deployment:
    """Quantize a filter to an int8 QDQ ONNX model within a Y-PSNR budget.

    Args:
        model: The float filter (not changed).
        calibration: Frames the activation ranges are calibrated on: the training split only.
        validation: Frames the loss is measured and the nodes are ranked on.
        config: The budget and settings.
        status: Called with what it is doing.
        against: The filter the loss is measured against (the unpruned original of a slim
            filter, so that the budget bounds the total loss); ``model`` itself when None.

    Returns:
        The models tried, the last one chosen, and the reference filter's Y-PSNR.

    Raises:
        NnslimError: A node ONNX Runtime cannot run in int8, or a loss over the budget, unless
            ``config.float_fallback``; the message names the nodes.
    """
    _refuse_bad_settings(config)
    if config.qat.steps:
        status(f"fine-tuning with int8 rounding for {config.qat.steps} steps on the training split")
    model = quantization_aware(model, calibration, config.qat)
    with tempfile.TemporaryDirectory(prefix="nnslim-deploy-") as scratch:
        folder = Path(scratch)
        status("exporting to ONNX")
        prepared = prepare(model, folder)
        graph = onnx.load(prepared)
        unsupported = unsupported_nodes(graph)
        if unsupported and not config.float_fallback:
            raise NnslimError(
                f"ONNX Runtime cannot run {describe(unsupported)} in int8; --float-fallback keeps them in float"
            )
        qp_input = takes_qp(model)
        feeds = tile_feeds(calibration, config.calibration_tiles, config.tile, config.seed, qp_input)
        status("measuring the float filter on validation")
        with torch.inference_mode():
            measured = copy.deepcopy(against).cpu().eval() if against is not None else model
            reference = mean_psnr_y(lambda qp: torch_runner(measured, qp), validation, config.frame_step)
        quantizer = Quantizer(prepared, folder, feeds, config.calibration, config.threads)
        check = Check(quantizer, validation, reference, config.frame_step)
        status(f"calibrating on {len(feeds)} training tiles; measuring int8 on validation")
        first = check.trial(tuple(FloatNode(n.name, n.op_type, "no int8 operator") for n in unsupported))
        candidates = [n for n in image_nodes(graph) if n.op_type in INT8_OPS]
        ranking_feeds = tile_feeds(validation, config.ranking_tiles, config.tile, config.seed, qp_input)
        trials = within_budget(check, first, candidates, ranking_feeds, config, status)
        return Deployment(tuple(trials), prepared.stat().st_size, reference, len(feeds))
