"""Rate control: the coarsest QP whose decoded filter stays within a Y-PSNR loss budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from nnslim.errors import NnslimError

BEYOND = 8
"""QPs tried past the bisection's answer: NNR's loss is not monotone in QP (QP -24 can be within a
budget that -23 and -22 miss), so a coarser QP can still fit. Eight more QPs quadruple the step."""


def search_qp(
    encode: Callable[[int], bytes],
    decode: Callable[[bytes], nn.Module],
    psnr: Callable[[nn.Module], float],
    reference_psnr: float,
    max_loss: float,
    qps: range = range(-64, 0),
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    beyond: int = BEYOND,
) -> tuple[int, bytes, list[dict[str, Any]]]:
    """The coarsest QP whose decoded filter loses at most ``max_loss`` dB, of the QPs tried.

    Bisection finds where the loss crosses the budget; since the loss is not monotone in QP,
    the ``beyond`` QPs coarser than the bisection's answer are tried as well, and the coarsest
    QP within the budget among all those tried is chosen. Each trial encodes at a QP, decodes,
    and measures the decoded filter with ``psnr`` (on validation data: the choice is never made
    on the data it is reported on).

    Args:
        encode: The file at a QP (``pack`` with that QP, for instance).
        decode: The runnable filter of a file.
        psnr: Y-PSNR of a filter on the measurement sequences.
        reference_psnr: The Y-PSNR the loss is measured from (the uncompressed filter's).
        max_loss: Loss budget in dB.
        qps: The QPs searched.
        on_trial: Called with each trial's row.
        beyond: QPs tried past the bisection's answer.

    Returns:
        The chosen QP, its file's bytes, and every trial in the order tried (``nnr_qp``, ``bytes``,
        ``psnr_y``, ``loss_db``, ``within``; ``qp``, the old name of ``nnr_qp``, beside it).

    Raises:
        NnslimError: No QP in range within the budget.
    """
    trials: dict[int, dict[str, Any]] = {}
    files: dict[int, bytes] = {}

    def trial(qp: int) -> bool:
        if qp not in trials:
            data = encode(qp)
            value = psnr(decode(data))
            row = {"nnr_qp": qp, "qp": qp, "bytes": len(data), "psnr_y": value, "loss_db": reference_psnr - value}
            row["within"] = row["loss_db"] <= max_loss
            trials[qp] = row
            files[qp] = data
            if on_trial:
                on_trial(row)
        return bool(trials[qp]["within"])

    low, high = qps.start, qps.stop - 1
    if not trial(low):
        raise NnslimError(f"even QP {low} loses {trials[low]['loss_db']:.3f} dB, more than the {max_loss} dB budget")
    while low < high:
        middle = (low + high + 1) // 2
        if trial(middle):
            low = middle
        else:
            high = middle - 1
    for qp in range(low + 1, min(low + beyond, qps.stop - 1) + 1):
        trial(qp)
    chosen = max(qp for qp, row in trials.items() if row["within"])
    return chosen, files[chosen], list(trials.values())
