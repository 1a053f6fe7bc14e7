"""Compress a filter by a recipe: the slim filter, its ONNX export and the step log, in an output folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nnslim.compress import recipe as recipes
from nnslim.compress.context import Context
from nnslim.compress.schedule import Run
from nnslim.deploy.speed import frame_timing, speed_in
from nnslim.errors import NnslimError
from nnslim.evaluate.plots import plot_pruning_steps
from nnslim.evaluate.runtime import check_runtime, export_onnx, onnx_max_difference
from nnslim.io import atomic_write_json, require_writable_dir
from nnslim.jobs.common import QUIET, Progress, check_qps, encode_cache, record
from nnslim.models import train
from nnslim.models.splits import splits_for
from nnslim.video.yuv import parse_size

ONNX_TOLERANCE = 1e-4


@dataclass(frozen=True)
class CompressRequest:
    """Compress one filter.

    Attributes:
        model: Filter file.
        out: Output folder; a rerun resumes what it finished.
        recipe: A named recipe (``bbc``, ``deep-compression``, ``lowrank``, ``full``) or a TOML file.
        max_loss: Y-PSNR loss budget in dB against the filter, judged on validation.
        sequences: Folder with ``sequences.json``.
        codec: Codec (the filter's own when None).
        qps: QPs (the filter's own when empty).
        max_size: Test sequences up to WxH are reported at each step.
        timing: Time a 1080p frame at each step (in turns with the step before) and the final speedup.
        objective: ``size`` or ``speed`` (``Recipe.objective``); the recipe's own when None.
        runtime: Where speed is measured (``Recipe.runtime``); the recipe's own when None.
        threads: CPU threads (every core when None).
        cache: Encode cache.
        store: Results store.
        trust_factory: The user architecture the filter may name.
        frames: Only the first frames of each sequence are trained on and measured (all when None).
    """

    model: Path
    out: Path
    recipe: str = "bbc"
    max_loss: float = 0.05
    sequences: Path = Path("data/sequences")
    codec: str | None = None
    qps: tuple[int, ...] = ()
    max_size: str | None = "416x240"
    timing: bool = True
    threads: int | None = None
    cache: Path | None = None
    store: Path | None = None
    trust_factory: str | None = None
    objective: str | None = None
    runtime: str | None = None
    frames: int | None = None


@dataclass(frozen=True)
class CompressResult:
    """The chosen slim filter and how it was reached.

    Attributes:
        summary: Recipe, codec, QPs, budget, the original and slim steps, quantization, ONNX
            check and (when timed) the speedup: what ``steps.json`` keeps as its settings.
        steps: Every step's measurements.
        run_id: The run's id in the results store.
    """

    summary: dict[str, Any]
    steps: list[dict[str, Any]]
    run_id: int

    @property
    def original_step(self) -> dict[str, Any]:
        return self.summary["original_step"]

    @property
    def slim_step(self) -> dict[str, Any]:
        return self.summary["slim_step"]

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "run_id": self.run_id}


def compress_pairs(
    original: Path,
    recipe: recipes.Recipe,
    ctx: Context,
    out: Path,
    progress: Progress = QUIET,
    trust_factory: str | None = None,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run (or resume) a recipe on frames already encoded, in ``out``; the sweep's points call this.

    Returns:
        The chosen model, every step's measurements, and the quantization metadata.
    """
    return Run(original, recipe, ctx, out, progress.note, trust_factory).run()


def compress(request: CompressRequest, progress: Progress = QUIET) -> CompressResult:
    """Run (or resume) a recipe on a filter and write ``slim.pt``, ``slim.onnx``, ``steps.json`` and a plot.

    Raises:
        NnslimError: A bad recipe, budget or filter, missing training sequences, or an ONNX
            export that does not match PyTorch.
    """
    chosen = recipes.load(request.recipe)
    runtime = check_runtime(request.runtime or chosen.runtime)
    chosen = dataclasses.replace(chosen, objective=request.objective or chosen.objective, runtime=runtime)
    if chosen.objective == "speed" and not request.timing:
        raise NnslimError("the speed objective decides by timing each step; it cannot run without timing")
    original, meta = train.load_filter(request.model, request.trust_factory)
    base = train.TrainConfig.from_dict(meta["training"])
    codec = request.codec or base.codec
    qps = check_qps(codec, request.qps or base.qps)
    if request.max_loss < 0:
        raise NnslimError(f"--max-loss must be at least 0 dB, got {request.max_loss}")
    if not base.validation_sequences:
        raise NnslimError(f"{request.model} records no validation sequences; compress judges its loss budget on them")
    out = require_writable_dir(request.out, create=True)
    max_size = parse_size(request.max_size) if request.max_size else None
    splits = splits_for(
        meta, request.sequences, max_size, request.frames, coding=(codec, qps), cache=encode_cache(request.cache)
    )
    progress.status("encoding the sequences")
    pairs = {split: splits.pairs(split, progress.status) for split in ("train", "validation", "test")}
    config = dataclasses.replace(base, codec=codec, qps=qps, threads=request.threads)
    speed = speed_in(chosen.runtime, pairs["train"], request.threads) if request.timing else None
    ctx = Context(
        pairs["train"], pairs["validation"], pairs["test"], config, request.max_loss, speed, chosen.objective,
        progress.status,
    )  # fmt: skip
    model, steps, quantization = compress_pairs(request.model, chosen, ctx, out, progress, request.trust_factory)
    slim_index = steps[-1]["kept"]
    summary: dict[str, Any] = {
        "recipe": chosen.to_dict(),
        "original": str(request.model),
        "codec": codec,
        "qps": list(qps),
        "max_loss_db": request.max_loss,
        "slim_index": slim_index,
        "original_step": steps[0],
        "slim_step": steps[slim_index],
        "quantization": quantization,
    }
    export_onnx(model, out / "slim.onnx")
    summary["onnx"] = {"file": "slim.onnx", "max_difference": onnx_max_difference(model, out / "slim.onnx")}
    if summary["onnx"]["max_difference"] > ONNX_TOLERANCE:
        raise NnslimError(f"ONNX Runtime's output differs from PyTorch's by {summary['onnx']['max_difference']:.2e}")
    if request.timing:
        progress.status(f"timing the original and the slim filter in turns in {chosen.runtime}")
        pair = {"original": original, "candidate": model}
        timing = frame_timing(pair, chosen.runtime, pairs["train"], request.threads)
        summary["speed"] = {**timing, "speedup": timing["original"]["median_ms"] / timing["candidate"]["median_ms"]}
    train.save_filter(model, out / "slim.pt", {**meta, "compression": summary})
    atomic_write_json(out / "steps.json", {"settings": summary, "steps": steps})
    params = {"model": str(request.model), "out": str(out), "recipe": chosen.name}
    run_id = record(request.store, "compress", params, {**summary, "steps": steps}, [codec])
    plot_pruning_steps(steps, out / "steps.png")
    return CompressResult(summary, steps, run_id)
