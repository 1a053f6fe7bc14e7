from nnslim.sweep import pareto

OBJECTIVES = ("bytes", "ms_per_1080p", "loss_db")


def _row(name: str, size: int, ms: float, loss: float) -> dict:
    return {"key": name, "bytes": size, "ms_per_1080p": ms, "loss_db": loss}


def test_the_front_holds_exactly_the_undominated_points() -> None:
    rows = [
        _row("small", 100, 50.0, 0.20),
        _row("fast", 400, 10.0, 0.10),
        _row("exact", 900, 80.0, 0.00),
        _row("worse", 500, 60.0, 0.30),  # dominated by small
        _row("tie", 100, 50.0, 0.20),  # equal to small: neither dominates
    ]
    assert [r["key"] for r in pareto.front(rows, OBJECTIVES)] == ["small", "fast", "exact", "tie"]
    assert [r["key"] for r in pareto.front(rows, ("bytes",))] == ["small", "tie"]


def test_best_per_budget_picks_the_smallest_and_the_fastest_within_it() -> None:
    rows = [_row("small", 100, 50.0, 0.20), _row("fast", 400, 10.0, 0.04), _row("exact", 900, 80.0, 0.0)]
    best = {(b["max_loss_db"], b["aim"]): b["row"] for b in pareto.best_per_budget(rows, [0.05, 0.5, -1.0])}
    assert best[(0.05, "smallest")]["key"] == "fast" and best[(0.05, "fastest")]["key"] == "fast"
    assert best[(0.5, "smallest")]["key"] == "small"
    assert best[(-1.0, "smallest")] is None
