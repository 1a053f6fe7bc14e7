"""Rate control: the coarsest QP whose decoded filter stays within a Y-PSNR loss budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from nnslim.errors import NnslimError


def search_qp(
    encode: Callable[[int], bytes],
    decode: Callable[[bytes], nn.Module],
    psnr: Callable[[nn.Module], float],
    reference_psnr: float,
    max_loss: float,
    qps: range = range(-64, 0),
    on_trial: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[bytes, list[dict[str, Any]]]:
    """Bisect the QP for the smallest file whose decoded filter loses at most ``max_loss`` dB.

    Each trial encodes at a QP, decodes, and measures the decoded filter with ``psnr``. The loss
    is taken as growing with the QP (coarser steps), which bisection needs; every trial is
    returned so that the assumption can be checked.

    Args:
        encode: The file at a QP (``pack`` with that QP, for instance).
        decode: The runnable filter of a file.
        psnr: Y-PSNR of a filter on the measurement sequences.
        reference_psnr: The Y-PSNR the loss is measured from (the uncompressed filter's).
        max_loss: Loss budget in dB.
        qps: The QPs searched.
        on_trial: Called with each trial's row.

    Returns:
        The chosen file's bytes and the trials (``qp``, ``bytes``, ``psnr_y``, ``loss_db``, ``within``).

    Raises:
        NnslimError: No QP in range within the budget.
    """
    trials: list[dict[str, Any]] = []
    files: dict[int, bytes] = {}

    def trial(qp: int) -> bool:
        data = encode(qp)
        value = psnr(decode(data))
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
