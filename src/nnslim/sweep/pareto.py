"""The trade-offs a sweep found: its Pareto front and the best configuration per loss budget."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any


def dominates(a: dict[str, Any], b: dict[str, Any], objectives: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one (all minimised)."""
    return all(a[k] <= b[k] for k in objectives) and any(a[k] < b[k] for k in objectives)


def front(rows: list[dict[str, Any]], objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The rows no other row dominates, in their given order."""
    return [r for r in rows if not any(dominates(other, r, objectives) for other in rows if other is not r)]


def best_per_budget(rows: list[dict[str, Any]], budgets: Sequence[float]) -> list[dict[str, Any]]:
    """For each Y-PSNR loss budget, the smallest file and the fastest filter within it.

    Returns:
        One entry per budget and aim (``smallest`` by bytes, ``fastest`` by ms per 1080p frame),
        with the chosen row, or ``None`` when no row is within the budget.
    """
    out = []
    for budget in budgets:
        within = [r for r in rows if r["loss_db"] <= budget]
        for aim, key in (("smallest", "bytes"), ("fastest", "ms_per_1080p")):
            ranked = sorted(within, key=itemgetter(key, "loss_db"))
            out.append({"max_loss_db": budget, "aim": aim, "row": ranked[0] if ranked else None})
    return out
