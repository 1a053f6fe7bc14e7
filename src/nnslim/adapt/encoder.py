"""The encoder side of content adaptation: fine-tune, quantize by rate-distortion, set the switch.

For one sequence, the encoder (which holds the original) trains what ``AdaptConfig.mode``
adapts on that sequence's own decoded and original frames (one update per coding QP, on that
QP's frames, or, with ``per_qp`` off, one for all QPs at once: the filters take the QP as
input), then, for each coding QP, chooses the update's NNR QP, or no update, by
minimising ``J = SSE + lambda * bits`` with the codec's own Lagrange multiplier (HM's
``0.57 * 2**((QP - 12) / 3)``, times ``lambda_scale``), and sets the per-block switch. What
it measures is the output a decoder makes from the update as decoded (``update.decode``), so
that decoding gives the same samples bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.adapt import params, switch, update
from nnslim.adapt.params import Mode
from nnslim.bitstream import nnr
from nnslim.errors import NnslimError
from nnslim.models.apply import LumaFilter, filter_frames, plane_filter
from nnslim.models.data import LumaPairs
from nnslim.models.filters import ArchSpec
from nnslim.models.train import TrainConfig, finetune
from nnslim.video.metrics import psnr_frames

HM_ALPHA = 0.57
"""HM's Lagrange multiplier constant for luma SSE: lambda = 0.57 * 2**((QP - 12) / 3)."""


@dataclass(frozen=True)
class AdaptConfig:
    """How the encoder adapts a filter to a sequence.

    The defaults were chosen on the validation sequence by ``benchmarks/adapt_validation.py``:
    ``lambda_scale`` is x265's own rate-distortion slope there over HM's lambda; ``multipliers``
    gave the best BD-rate of the four modes, each trained per QP (200 steps each), and then the
    best of learning rates 5e-3 to 4e-2 was 2e-2. Within the time budget (200 steps per QP),
    the denser NNR QPs beat the coarser ones, and of patch sides 32 to 64 at about the same
    samples per step (so the same time), 14 patches of 48x48 beat 8 of 64x64.

    Attributes:
        mode: What adapts (``params.MODES``).
        switch: Whether the encoder sets per-block switch flags.
        per_qp: One update per coding QP, trained on that QP's frames alone (``steps`` each),
            instead of one for all QPs.
        block: The switch's block side in luma samples.
        steps: Fine-tuning steps.
        lr: Adam's learning rate.
        batch: Patches per step.
        patch: Patch side.
        nnr_qps: NNR QPs the update may be quantized with (besides sending none).
        lambda_scale: Multiplies HM's lambda.
        rd_frame_step: The rate-distortion choice looks at every n-th frame.
        seed: Seeds the patch sampling.
        threads: CPU threads.
    """

    mode: Mode = "multipliers"
    switch: bool = True
    per_qp: bool = True
    block: int = 64
    steps: int = 200
    lr: float = 2e-2
    batch: int = 14
    patch: int = 48
    nnr_qps: tuple[int, ...] = (-24, -20, -16, -14, -12, -10, -8, -6, -4)
    lambda_scale: float = 9.6
    rd_frame_step: int = 4
    seed: int = 0
    threads: int | None = 2

    def __post_init__(self) -> None:
        params.check_mode(self.mode)
        if self.block not in switch.BLOCKS:
            raise NnslimError(f"--block must be one of {', '.join(map(str, switch.BLOCKS))}, not {self.block}")
        if self.steps < 0 or self.rd_frame_step < 1 or self.lambda_scale < 0:
            raise NnslimError("steps and lambda_scale must be 0 or more, rd_frame_step 1 or more")
        if self.batch < 1 or self.patch < 1:
            raise NnslimError(f"--batch and --patch must be 1 or more, not {self.batch} and {self.patch}")


def hm_lambda(qp: int) -> float:
    """HM's Lagrange multiplier for luma SSE at a codec QP."""
    return HM_ALPHA * 2.0 ** ((qp - 12) / 3)


@dataclass(frozen=True)
class Coded:
    """One sequence at one QP, as the encoder chose to send it.

    Attributes:
        qp: The codec QP.
        data: The `.nnsu` file.
        signalled_bytes: What a codec carries of it (``update.signalled_bytes``).
        output: The luma a decoder makes from the video and this update, uint8 (frames, height, width).
        flags_on: Share of blocks whose filter is on (1.0 without a switch).
    """

    qp: int
    data: bytes
    signalled_bytes: int
    output: np.ndarray
    flags_on: float


def train_update(
    base: nn.Module,
    arch: ArchSpec,
    pairs: list[LumaPairs],
    config: AdaptConfig,
    on_step: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Fine-tune what ``config.mode`` adapts on one sequence's pairs; returns the update, unquantized.

    Raises:
        NnslimError: Pairs of more than one sequence.
    """
    if len({p.name for p in pairs}) != 1:
        raise NnslimError("an update is trained on one sequence: its decoded and original frames only")
    if config.mode == "none" or config.steps == 0:
        return np.zeros(params.size(base, config.mode), np.float32)
    tuned = params.trainable(base, config.mode)
    tuned.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # faster on CPU; untyped in torch
    settings = TrainConfig(
        arch, steps=config.steps, batch=config.batch, patch=config.patch, lr=config.lr,
        warmup=min(20, config.steps // 10 + 1), seed=config.seed, threads=config.threads,
    )  # fmt: skip
    finetune(tuned, pairs, settings, on_step)
    return params.vector(base, tuned, config.mode)


def train_updates(
    base: nn.Module, arch: ArchSpec, pairs: list[LumaPairs], config: AdaptConfig
) -> dict[int, np.ndarray]:
    """The unquantized update for each coding QP of one sequence: one per QP, or one shared by all."""
    if config.per_qp:
        return {pair.qp: train_update(base, arch, [pair], config) for pair in pairs}
    shared = train_update(base, arch, pairs, config)
    return {pair.qp: shared for pair in pairs}


def quantized(values: np.ndarray, nnr_qp: int) -> tuple[np.ndarray, int]:
    """The values as NNR quantizes them at ``nnr_qp`` (coded and decoded), and the bytes of their data unit."""
    data = nnr.encode({update.VALUES: values}, nnr_qp, nnr_qp)
    return nnr.decode(data, {update.VALUES: values.size})[update.VALUES].astype(np.float32), nnr.data_bytes(data)


def _sse(original: np.ndarray, test: np.ndarray) -> float:
    return float(((original.astype(np.int64) - test.astype(np.int64)) ** 2).sum())


def _filtered(base: nn.Module, mode: Mode, values: np.ndarray, decoded: np.ndarray, qp: int) -> np.ndarray:
    return filter_frames(params.apply_update(base, mode, values), decoded, qp)


def flag_bytes(flags: np.ndarray) -> int:
    """Bytes of the NNR data unit of per-block flags."""
    return nnr.data_bytes(nnr.encode({update.FLAGS: flags.astype(np.int32)}, 0, 0))


def set_switch(original: np.ndarray, decoded: np.ndarray, filtered: np.ndarray, block: int, lam: float) -> np.ndarray:
    """The switch's flags of least rate-distortion cost: per block, or every block on, or every block off."""
    blocks = switch.decide(original, decoded, filtered, block)
    options = [np.ones_like(blocks), np.zeros_like(blocks)]
    if blocks.any() and not blocks.all():
        options.append(blocks)

    def cost(flags: np.ndarray) -> float:
        rate = flag_bytes(flags) if 0 < flags.sum() < flags.size else 0
        return _sse(original, switch.switched(decoded, filtered, flags, block)) + lam * 8 * rate

    return min(options, key=cost)


def _decoder_output(
    pair: LumaPairs, filtered: np.ndarray, config: AdaptConfig, frames: slice
) -> tuple[np.ndarray, np.ndarray | None]:
    """The switched output on ``frames`` and its flags (the filtered frames and None without a switch)."""
    decoded, original = pair.decoded[frames], pair.original[frames]
    if not config.switch:
        return filtered, None
    flags = set_switch(original, decoded, filtered, config.block, config.lambda_scale * hm_lambda(pair.qp))
    return switch.switched(decoded, filtered, flags, config.block), flags


def choose_nnr_qp(
    base: nn.Module, pair: LumaPairs, base_filtered: np.ndarray, raw: np.ndarray, config: AdaptConfig
) -> list[dict[str, Any]]:
    """Each choice of the update's NNR QP (None: no update) and its rate-distortion cost, on every n-th frame.

    ``base_filtered`` is the base filter's output on every frame (the no-update choice's). The
    cost is ``SSE + lambda * bits`` of the update, the SSE scaled to all frames; the switch's
    flags cost about the same whatever the choice, and are left out of it.
    """
    frames = slice(None, None, config.rd_frame_step)
    lam = config.lambda_scale * hm_lambda(pair.qp)
    choices: list[int | None] = [None] + ([*config.nnr_qps] if config.mode != "none" and raw.size else [])
    trials = []
    for nnr_qp in choices:
        if nnr_qp is None:
            filtered, size = base_filtered[frames], 0
        else:
            try:
                values, size = quantized(raw, nnr_qp)
            except NnslimError:  # NNCodec cannot code these values at this QP: not a choice
                continue
            filtered = _filtered(base, config.mode, values, pair.decoded[frames], pair.qp)
        output, _ = _decoder_output(pair, filtered, config, frames)
        sse = _sse(pair.original[frames], output) * config.rd_frame_step
        trials.append({"nnr_qp": nnr_qp, "bytes": size, "sse": sse, "cost": sse + lam * 8 * size, "lambda": lam})
    return trials


def code_sequence_qp(
    base: nn.Module,
    base_sha256: str,
    pair: LumaPairs,
    base_filtered: np.ndarray,
    raw: np.ndarray,
    config: AdaptConfig,
    codec: str,
) -> tuple[Coded, list[dict[str, Any]]]:
    """Choose the update's NNR QP by rate-distortion on the sequence, set the switch, and code the update.

    ``base_filtered`` is the base filter's output on every frame, which the no-update choice reuses.

    Returns:
        The coded update with the output a decoder makes of it, and the rate-distortion trials.
    """
    trials = choose_nnr_qp(base, pair, base_filtered, raw, config)
    best = min(trials, key=lambda t: t["cost"])["nnr_qp"]
    mode: Mode = config.mode if best is not None else "none"
    values = quantized(raw, best)[0] if best is not None else np.zeros(0, np.float32)
    filtered = base_filtered if best is None else _filtered(base, mode, values, pair.decoded, pair.qp)
    output, flags = _decoder_output(pair, filtered, config, slice(None))
    frames, height, width = pair.decoded.shape
    chosen = update.Update(
        base_sha256, pair.name, codec, pair.qp, mode, values, best, config.block if config.switch else None, flags,
        width, height, frames,
    )  # fmt: skip
    data = update.encode(chosen)
    if not np.array_equal(update.decode(data, base, base_sha256).values, values):
        raise NnslimError("the update does not decode to the values the encoder evaluated")
    on = float(flags.mean()) if flags is not None else 1.0
    return Coded(pair.qp, data, update.signalled_bytes(data), output, on), trials


def update_filter(base: nn.Module, coded: update.Update) -> LumaFilter:
    """The luma filter a decoder runs: the base filter with the update applied, where the switch is on.

    It filters as ``nnslim filter`` does by default (256-pixel tiles, 16 pixels of context), as
    the encoder did when it evaluated the update.
    """
    model = params.apply_update(base, coded.mode, coded.values)
    run = plane_filter(model, coded.qp)

    def luma(index: int, plane: np.ndarray) -> np.ndarray:
        if coded.flags is None:
            return run(index, plane)
        if not coded.flags[index].any():
            return plane
        block = coded.block or 0
        return switch.switched(plane[None], run(index, plane)[None], coded.flags[index : index + 1], block)[0]

    return luma


def check_frames(coded: update.Update, frames: int, width: int, height: int) -> None:
    """Refuse a video other than the one the update was made for.

    Raises:
        NnslimError: Frames of another size or count.
    """
    if (frames, width, height) != (coded.frames, coded.width, coded.height):
        raise NnslimError(
            f"the update was made for {coded.frames} frames of {coded.width}x{coded.height} of {coded.sequence}, "
            f"not {frames} of {width}x{height}"
        )


def apply_decoded(base: nn.Module, coded: update.Update, decoded: np.ndarray) -> np.ndarray:
    """What a decoder outputs for decoded luma (frames, height, width) with this update.

    Raises:
        NnslimError: Frames of another size or count than the update was made for.
    """
    check_frames(coded, decoded.shape[0], decoded.shape[2], decoded.shape[1])
    luma = update_filter(base, coded)
    return np.stack([luma(index, plane) for index, plane in enumerate(decoded)])


def psnr_y(original: np.ndarray, test: np.ndarray) -> float:
    """Mean Y-PSNR over frames."""
    return float(np.mean(psnr_frames(original, test)))


def kbps_with(pair: LumaPairs, extra_bytes: int) -> float:
    """The encode's bitrate with ``extra_bytes`` more sent (an update), from its video bytes.

    Raises:
        NnslimError: Pairs whose video bytes are not known.
    """
    if pair.video_bytes <= 0:
        raise NnslimError(f"{pair.name} QP {pair.qp}: the video's bytes are not known")
    return pair.kbps * (pair.video_bytes + extra_bytes) / pair.video_bytes
