"""The sweep driver: prepares the shared inputs, hands points to an executor, records every outcome.

Only the driver writes. Each finished point leaves ``OUT/points/KEY.json`` (its settings and
figures, or its error) and, when it worked, ``OUT/points/KEY.nnsl``, and a row in the results
store. A rerun skips every point that has its JSON, so a stopped sweep resumes; failed points
run again only when asked.
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
from nnslim.io import atomic_write_bytes, atomic_write_json
from nnslim.models.data import encode_pairs
from nnslim.models.train import load_filter, validate
from nnslim.store import ResultsStore
from nnslim.sweep import pareto
from nnslim.sweep.executors import local_slots, run_local, run_ray
from nnslim.sweep.space import SweepConfig, SweepPoint, points
from nnslim.sweep.worker import FilterFile, PairSet, SharedInputs, pair_key
from nnslim.video import content
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
    manifest = content.load_manifest(Path(config.sequences))
    available = {s.name: s for s in content.select(manifest, "train")}
    test = list(content.select(manifest, "test", None, parse_size(config.max_size) if config.max_size else None))
    if not test:
        raise NnslimError(f"no test sequences in {config.sequences}")
    pairs: dict[str, PairSet] = {}
    for point in chosen:
        key = pair_key(point)
        if key in pairs:
            continue
        training = filters[point.model].meta["training"]
        names = [*training["train_sequences"], *training["validation_sequences"]]
        if missing := sorted(set(names) - set(available)):
            raise NnslimError(f"{config.sequences} lacks {point.model}'s training sequences {', '.join(missing)}")
        qps = (point.qp,)
        train = encode_pairs(
            [available[n] for n in training["train_sequences"]], point.codec, qps, cache, None, on_step
        )
        val = encode_pairs([available[n] for n in training["validation_sequences"]], point.codec, qps, cache, None)
        held_out = encode_pairs(test, point.codec, qps, cache, config.frames, on_step)
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


def run_sweep(
    config: SweepConfig,
    config_path: Path,
    out: Path,
    executor: Executor,
    cache: Path,
    store: ResultsStore,
    on_step: Callable[[str], None] = lambda _: None,
    on_progress: Callable[[Tally], None] = lambda _: None,
    retry_failed: bool = False,
    trusted_factory: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) a sweep and summarise it.

    ``trusted_factory`` is the user architecture (``file.py:factory``) the sweep's filters may name.

    Returns:
        ``summarise``'s document, plus ``ran`` (points run this time) and ``skipped``.
    """
    chosen, inputs, speeds = prepare(config, executor, cache, on_step, trusted_factory)
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
        outcomes = run_ray(todo, inputs, executor.ray, started)
    elif todo:
        outcomes = run_local(todo, inputs, executor.workers or local_slots(executor.threads), started)
    (out / "points").mkdir(parents=True, exist_ok=True)
    for point, outcome in outcomes:
        progress.running -= 1
        _record(out, config_path, point, outcome, executor, store)
        if outcome["status"] == "done":
            progress.done += 1
        else:
            progress.failed += 1
        on_progress(progress)
    return {**summarise(config, out, chosen, speeds), "ran": len(todo), "skipped": len(chosen) - len(todo)}


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
        **row["knobs"],
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
    ("activation", "activation"),
    ("energy", "low-rank energy"),
    ("quantizer", "quantizer"),
    ("bits", "bits"),
    ("coder", "coder"),
    ("coder_qp", "coder QP"),
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
