"""Rate control: the coarsest NNR QP whose decoded filter stays within a Y-PSNR loss budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from torch import nn

from nnslim.bitstream.pack import PackConfig, pack, unpack
from nnslim.errors import NnslimError


def search_qp(
    model: nn.Module,
    meta: dict[str, Any],
    config: PackConfig,
    psnr: Callable[[nn.Module], float],
    reference_psnr: float,
    max_loss: float,
    qps: range = range(-64, 0),
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """Bisect the weight QP for the smallest file whose decoded filter loses at most ``max_loss`` dB.

    Each trial packs at a QP, unpacks, and measures the decoded filter with ``psnr``. The loss is
    taken as growing with the QP (coarser steps), which bisection needs; every trial is returned
    so that the assumption can be checked.

    Args:
        model: The filter to pack.
        meta: Its description.
        config: Coding settings; ``qp`` is searched, the rest kept (the coder must be ``nnr``).
        psnr: Y-PSNR of a filter on the measurement sequences.
        reference_psnr: The Y-PSNR the loss is measured from (the uncompressed filter's).
        max_loss: Loss budget in dB.
        qps: The QPs searched.
        on_trial: Called with each trial's row.

    Returns:
        The chosen file's bytes and the trials (``qp``, ``bytes``, ``psnr_y``, ``loss_db``, ``within``).

    Raises:
        NnslimError: Another coder than ``nnr``, or no QP in range within the budget.
    """
    if config.coder != "nnr":
        raise NnslimError(f"--max-loss searches the NNR QP; it needs --coder nnr, not {config.coder}")
    trials: list[dict[str, Any]] = []
    files: dict[int, bytes] = {}

    def trial(qp: int) -> bool:
        data = pack(model, meta, replace(config, qp=qp))
        decoded, _ = unpack(data)
        value = psnr(decoded)
        row = {"qp": qp, "bytes": len(data), "psnr_y": value, "loss_db": reference_psnr - value}
        row["within"] = row["loss_db"] <= max_loss
        trials.append(row)
        files[qp] = data
        if on_trial:
            on_trial(row)
        return bool(row["within"])

    low, high = qps.start, qps.stop - 1
    if not trial(low):
        raise NnslimError(f"even QP {low} loses {trials[-1]['loss_db']:.3f} dB, more than the {max_loss} dB budget")
    while low < high:
        middle = (low + high + 1) // 2
        if trial(middle):
            low = middle
        else:
            high = middle - 1
    return files[low], trials
