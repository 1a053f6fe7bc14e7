"""The sweep job: prepares the shared inputs, hands points to an executor, records every outcome.

Only this job writes. Each finished point leaves ``OUT/points/KEY.json`` (its settings and
figures, or its error) and, when it worked, ``OUT/points/KEY.nnsl``, and a row in the results
store. A rerun skips every point that has its JSON, so a stopped sweep resumes; failed points
run again only when asked. The points themselves run in ``sweep.worker``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nnslim.errors import NnslimError
from nnslim.evaluate.plots import plot_pareto
from nnslim.evaluate.report import Section, Table, write_report
from nnslim.evaluate.runtime import torch_ms_per_frame
from nnslim.io import atomic_write_bytes, atomic_write_json, require_writable_dir
from nnslim.jobs.common import encode_cache, versions
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter, validate
from nnslim.store import ResultsStore
from nnslim.sweep import pareto, space
from nnslim.sweep.executors import local_slots, run_local, run_ray
from nnslim.sweep.space import SweepConfig, SweepPoint, points, with_aliases
from nnslim.sweep.worker import FilterFile, PairSet, SharedInputs, attempt, pair_key
from nnslim.video.yuv import parse_size


@dataclass(frozen=True)
class Executor:
    """Where points run.

    Attributes:
        ray: ``None`` for the local process pool; else ``local``, ``auto`` or a cluster address.
        workers: Local pool size (as many points as fit on the cores when None).
        threads: PyTorch threads per point.
    """

    ray: str | None = None
    workers: int | None = None
    threads: int = 1


@dataclass
class Tally:
    """Counts the display shows."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0


def _filters(config: SweepConfig, trusted_factory: str | None) -> tuple[dict[str, FilterFile], dict[str, nn.Module]]:
    """Each filter's files and the filter loaded; a bad or untrusted file stops here, not in a worker."""
    files, models = {}, {}
    for name in config.models:
        models[name], meta = load_filter(Path(name), trusted_factory)
        files[name] = FilterFile(Path(name).read_bytes(), meta)
    return files, models


def prepare(
    config: SweepConfig,
    executor: Executor,
    cache: Path,
    on_step: Callable[[str], None],
    trusted_factory: str | None = None,
) -> tuple[list[SweepPoint], SharedInputs, dict[str, float]]:
    """The sweep's points, the inputs every point reads, and each filter's own ms per 1080p frame.

    Encodes (or reads from the cache) the train, validation and test frames of every filter at
    every codec and QP the points use, and measures each uncompressed filter once. The filters
    may name the user architecture ``trusted_factory`` (``file.py:factory``) and no other.
    """
    filters, originals = _filters(config, trusted_factory)
    trained_for = {}
    for name, f in filters.items():
        training = f.meta.get("training", {})
        if "codec" not in training or not training.get("qps"):
            raise NnslimError(f"{name} records no training codec and QP")
        trained_for[name] = (str(training["codec"]), int(training["qps"][0]))
    chosen = points(config, trained_for)
    max_size = parse_size(config.max_size) if config.max_size else None
    pairs: dict[str, PairSet] = {}
    for point in chosen:
        key = pair_key(point)
        if key in pairs:
            continue
        coding = (point.codec, (point.qp,))
        splits = splits_for(
            filters[point.model].meta, Path(config.sequences), max_size, config.frames, coding=coding, cache=cache
        )
        train, val, held_out = (splits.pairs(split, on_step) for split in ("train", "validation", "test"))
        references = [validate(originals[point.model], p, frame_step=1)["psnr_y_filtered"] for p in (val, held_out)]
        pairs[key] = PairSet(train, val, held_out, *references)
    speeds = {}
    for name, model in originals.items():
        on_step(f"timing {name}")
        speeds[name] = torch_ms_per_frame(model, repetitions=config.repetitions, threads=executor.threads)["median_ms"]
    return chosen, SharedInputs(filters, pairs, executor.threads, config.repetitions, trusted_factory), speeds


def _point_path(out: Path, point: SweepPoint) -> Path:
    return out / "points" / f"{point.key()}.json"


def finished_points(out: Path, chosen: list[SweepPoint]) -> dict[str, dict[str, Any]]:
    """The recorded outcome of each point that has one, by key."""
    found = {}
    for point in chosen:
        path = _point_path(out, point)
        if path.is_file():
            found[point.key()] = json.loads(path.read_text())
    return found


@dataclass(frozen=True)
class SweepRequest:
    """Run (or resume) a sweep.

    Attributes:
        sweep: The sweep file (TOML).
        out: Output folder; a rerun runs only the missing points.
        executor: Where points run (a local pool or Ray) and their threads.
        retry_failed: Run failed points again.
        cache: Encode cache.
        store: Results store.
        trust_factory: The user architecture (``file.py:factory``) the sweep's filters may name.
    """

    sweep: Path
    out: Path
    executor: Executor = Executor()
    retry_failed: bool = False
    cache: Path | None = None
    store: Path | None = None
    trust_factory: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """``summarise``'s document (rows, front, best per budget), ``ran`` and ``skipped``, and the run id."""

    document: dict[str, Any]
    run_id: int

    def to_json(self) -> dict[str, Any]:
        return {**self.document, "run_id": self.run_id}


def run_sweep(
    request: SweepRequest,
    on_step: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[Tally], None] = lambda _: None,
) -> SweepResult:
    """Run (or resume) a sweep and summarise it.

    Raises:
        NnslimError: A bad sweep file, filters or settings; a failing point is recorded instead.
    """
    config = space.load(request.sweep)
    executor, retry_failed = request.executor, request.retry_failed
    if executor.threads < 1 or (executor.workers is not None and executor.workers < 1):
        raise NnslimError("--threads and --workers must be at least 1")
    out = require_writable_dir(request.out, create=True)
    store = ResultsStore(request.store)
    cache = encode_cache(request.cache)
    config_path = request.sweep
    chosen, inputs, speeds = prepare(config, executor, cache, on_step, request.trust_factory)
    previous = finished_points(out, chosen)
    todo = [p for p in chosen if p.key() not in previous or (retry_failed and previous[p.key()]["status"] == "failed")]
    waiting = {p.key() for p in todo}
    kept = [r for key, r in previous.items() if key not in waiting]
    progress = Tally(
        total=len(chosen),
        done=sum(r["status"] == "done" for r in kept),
        failed=sum(r["status"] == "failed" for r in kept),
        skipped=len(kept),
    )
    on_progress(progress)

    def started(_point: SweepPoint) -> None:
        progress.running += 1
        on_progress(progress)

    outcomes: Iterator[tuple[SweepPoint, dict[str, Any]]] = iter(())  # nothing left: start no pool or cluster
    if todo and executor.ray is not None:
        outcomes = run_ray(attempt, todo, inputs, inputs.threads, executor.ray, started)
    elif todo:
        outcomes = run_local(attempt, todo, inputs, executor.workers or local_slots(executor.threads), started)
    (out / "points").mkdir(parents=True, exist_ok=True)
    for point, outcome in outcomes:
        progress.running -= 1
        _record(out, config_path, point, outcome, executor, store)
        if outcome["status"] == "done":
            progress.done += 1
        else:
            progress.failed += 1
        on_progress(progress)
    document = {**summarise(config, out, chosen, speeds), "ran": len(todo), "skipped": len(chosen) - len(todo)}
    params = {"sweep": str(config_path), "out": str(out), "ray": executor.ray, "threads": executor.threads}
    summary = {k: document[k] for k in ("points", "finished", "failed", "front", "best", "ran", "skipped")}
    run_id = store.record("sweep", params, summary, versions(sorted({r["codec"] for r in document["rows"]})))
    return SweepResult(document, run_id)


def _record(
    out: Path, config_path: Path, point: SweepPoint, outcome: dict[str, Any], executor: Executor, store: ResultsStore
) -> None:
    key = point.key()
    row: dict[str, Any] = {"key": key, **point.to_dict(), "executor": "ray" if executor.ray else "local"}
    row |= {k: v for k, v in outcome.items() if k != "file"}
    if "file" in outcome:
        atomic_write_bytes(out / "points" / f"{key}.nnsl", outcome["file"])
        row["file"] = f"{key}.nnsl"
    params = {"sweep": str(config_path), "out": str(out), "key": key, **point.to_dict()}
    row["run_id"] = store.record("sweep-point", params, {k: v for k, v in row.items() if k != "traceback"}, {})
    atomic_write_json(_point_path(out, point), row)


def _flat(row: dict[str, Any], speeds: dict[str, float]) -> dict[str, Any]:
    """A finished point as one table row: its knobs beside its figures."""
    return {
        "key": row["key"],
        "model": Path(row["model"]).stem,
        "codec": row["codec"],
        "qp": row["qp"],
        **with_aliases(row["knobs"]),
        **{
            k: row.get(k)
            for k in ("bytes", "parameters", "kmac_per_pixel", "loss_db", "test_loss_db", "ms_per_1080p", "seconds")
        },
        "speedup": speeds[row["model"]] / row["ms_per_1080p"],
    }


def summarise(config: SweepConfig, out: Path, chosen: list[SweepPoint], speeds: dict[str, float]) -> dict[str, Any]:
    """The sweep's table, Pareto front, best configurations per budget, plot and report (written to ``out``)."""
    recorded = finished_points(out, chosen)
    rows = [_flat(r, speeds) for r in recorded.values() if r["status"] == "done"]
    failed = [
        {"key": r["key"], "knobs": r["knobs"], "error": r["error"]}
        for r in recorded.values()
        if r["status"] == "failed"
    ]
    front = pareto.front(rows, config.objectives)
    best = pareto.best_per_budget(rows, config.budgets)
    if rows:
        plot_pareto(rows, front, out / "pareto.png")
    document = {
        "points": len(chosen),
        "finished": len(rows),
        "failed": failed,
        "original_ms_per_1080p": speeds,
        "objectives": list(config.objectives),
        "rows": rows,
        "front": front,
        "best": best,
    }
    atomic_write_json(out / "sweep.json", document)
    write_report("nnslim sweep", _sections(document, out), document, out / "report")
    return document


_COLUMNS = [
    ("model", "model"),
    ("sparsity", "sparsity"),
    ("fraction", "activation fraction"),
    ("energy", "low-rank energy"),
    ("method", "quantizer"),
    ("bits", "bits"),
    ("coder", "coder"),
    ("nnr_qp", "NNR QP"),
    ("bytes", "file bytes"),
    ("parameters", "parameters"),
    ("ms_per_1080p", "ms per 1080p"),
    ("speedup", "speedup"),
    ("loss_db", "validation loss (dB)"),
    ("test_loss_db", "test loss (dB)"),
]
_FORMATS = {
    "bytes": ",",
    "parameters": ",",
    "ms_per_1080p": ".0f",
    "speedup": ".2f",
    "loss_db": "+.3f",
    "test_loss_db": "+.3f",
}


def _sections(document: dict[str, Any], out: Path) -> list[Section]:
    best_rows = [
        {"budget": f"≤ {b['max_loss_db']} dB", "aim": b["aim"], **(b["row"] or {"sparsity": "none within the budget"})}
        for b in document["best"]
    ]
    sections = [
        Section(
            "Pareto front",
            f"{len(document['front'])} of {document['finished']} finished points are on the front "
            f"(minimising {', '.join(document['objectives'])}); {len(document['failed'])} failed.",
            [Table(document["front"], _COLUMNS, _FORMATS)],
            [out / "pareto.png"] if (out / "pareto.png").is_file() else [],
        ),
        Section(
            "Best configuration per budget",
            "Chosen by the Y-PSNR loss against the uncompressed filter on the validation sequences; "
            "the test loss of the same point is measured once and shown beside it.",
            [Table(best_rows, [("budget", "loss budget"), ("aim", "aim"), *_COLUMNS[1:]], _FORMATS)],
        ),
        Section("Every point", "", [Table(document["rows"], _COLUMNS, _FORMATS)]),
    ]
    if document["failed"]:
        sections.append(
            Section("Failed points", "", [Table(document["failed"], [("key", "point"), ("error", "error")])])
        )
    return sections
