"""The main job: sequences, codec comparison, compress, pack, unpack, evaluate, adapt, and a report.

Each step is a job of its own; its result goes to a JSON file in the output folder, and a
rerun skips every step whose file is there, so a stopped demo resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nnslim import assets
from nnslim.adapt.encoder import AdaptConfig
from nnslim.bitstream.pack import PackConfig, unpack
from nnslim.deploy.quantize import DeployConfig
from nnslim.errors import NnslimError
from nnslim.evaluate.demo import ADAPT_SEQUENCE, MODES, DemoMode, build_report, crop_panels
from nnslim.evaluate.measure import EvaluateConfig
from nnslim.io import atomic_write_json, require_writable_dir
from nnslim.jobs.adapt import AdaptRequest, adapt
from nnslim.jobs.common import QUIET, Progress, encode_cache, record
from nnslim.jobs.compress import CompressRequest, compress
from nnslim.jobs.deploy import DeployRequest, deploy
from nnslim.jobs.evaluate import EvaluateRequest, evaluate_file
from nnslim.jobs.pack import PackRequest, UnpackRequest, pack_file, unpack_file
from nnslim.jobs.video import CodecsRequest, SequencesRequest, codecs, sequences
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter
from nnslim.store import ResultsStore
from nnslim.video.yuv import parse_size

DEMO_SIZE = "416x240"


@dataclass(frozen=True)
class DemoRequest:
    """Run the demo.

    Attributes:
        out: Output folder; a rerun resumes.
        sequences: Sequence folder (built if missing).
        model: Filter to compress (the shipped multi-QP post-filter when None).
        shipped: A slim .nnsl of the model, evaluated beside this run's (MODEL.bbc.nnsl when None).
        mode: ``quick``, ``default`` or ``full`` (see ``evaluate.demo.MODES``).
        store: Results store.
        trust_factory: The user architecture the filters may name.
    """

    out: Path = Path("out/demo")
    sequences: Path = Path("data/sequences")
    model: Path | None = None
    shipped: Path | None = None
    mode: str = "default"
    store: Path | None = None
    trust_factory: str | None = None


@dataclass(frozen=True)
class DemoResult:
    """Where the report is, how long the demo took, and its run id."""

    out: Path
    mode: str
    model: Path
    sequences: Path
    seconds: float
    report: Path
    run_id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "out": str(self.out),
            "mode": self.mode,
            "model": str(self.model),
            "sequences": str(self.sequences),
            "seconds": self.seconds,
            "report": str(self.report),
        }


def _step(name: str, done: Path, run: Callable[[], Any], progress: Progress) -> None:
    """Run one step and write its result to ``done``, unless ``done`` shows it finished before."""
    if done.is_file():
        progress.note(f"{name}: finished before, kept {done}")
        return
    progress.note(f"{name} ...")
    try:
        result = run()
    except NnslimError as exc:
        raise NnslimError(f"the demo's {name} step failed: {exc}; run the demo again to resume") from None
    atomic_write_json(done, result.to_json())
    progress.note(f"{name}: done, {done.name} written")


def demo(request: DemoRequest, progress: Progress = QUIET) -> DemoResult:
    """Run (or resume) every step and write the report.

    Raises:
        NnslimError: A step's error, named by the step; finished steps are kept.
    """
    mode: DemoMode = MODES[request.mode]
    out = require_writable_dir(request.out, create=True)
    model = request.model or assets.shipped(assets.DEFAULT_FILTER)
    seqs, trust, start = request.sequences, request.trust_factory, time.perf_counter()
    (out / "recipe.toml").write_text(mode.recipe_toml())
    if (seqs / "sequences.json").is_file():
        progress.note(f"sequences: using those in {seqs}")
    else:
        _step("sequences", out / "sequences.json", lambda: sequences(SequencesRequest(seqs)), progress)
    codec_names = tuple(mode.codecs.split(","))
    compared = CodecsRequest(seqs, codec_names, frames=mode.frames, max_size=DEMO_SIZE, store=request.store)
    _step("codec comparison", out / "codecs.json", lambda: codecs(compared, progress), progress)
    compressing = CompressRequest(
        model, out / "compress", str(out / "recipe.toml"), 0.05, seqs, store=request.store, trust_factory=trust,
        frames=mode.compress_frames,
    )  # fmt: skip
    _step("compress (full recipe)", out / "compress.json", lambda: compress(compressing, progress), progress)
    packing = PackRequest(
        out / "compress", out / "slim.nnsl", PackConfig(coder="nnr", dependent=True), 0.02, sequences=seqs,
        frames=mode.frames, trust_factory=trust,
    )  # fmt: skip
    _step("pack (nnr, QP searched within 0.02 dB)", out / "pack.json", lambda: pack_file(packing, progress), progress)
    unpacking = UnpackRequest(out / "slim.nnsl", out / "decoded", trust_factory=trust)
    _step("unpack", out / "unpack.json", lambda: unpack_file(unpacking), progress)
    width, height = mode.timed_frame
    timing = EvaluateConfig(width=width, height=height, repetitions=mode.repetitions)

    def evaluating(file: Path) -> EvaluateRequest:
        return EvaluateRequest(
            model, file, seqs, frames=mode.frames, measure=timing, store=request.store, trust_factory=trust
        )

    _step("evaluate", out / "evaluate.json", lambda: evaluate_file(evaluating(out / "slim.nnsl"), progress), progress)
    shipped = request.shipped or model.with_suffix(".bbc.nnsl")
    if shipped.is_file():
        heading = "evaluate the shipped slim filter (full-length bbc recipe)"
        quality = replace(evaluating(shipped), measure=replace(timing, timing=False))
        _step(heading, out / "evaluate_shipped.json", lambda: evaluate_file(quality, progress), progress)
    else:
        progress.note(f"no shipped slim filter at {shipped}; the report shows this run's only")
    deploying = DeployRequest(
        out / "slim.nnsl", out / "slim_int8.onnx", seqs, DeployConfig(float_fallback=True), frames=mode.frames,
        trust_factory=trust,
    )  # fmt: skip
    _step("deploy the slim filter in int8", out / "deploy.json", lambda: deploy(deploying, progress), progress)
    int8 = out / "slim_int8.onnx"
    _step("evaluate the int8 model", out / "evaluate_int8.json", lambda: evaluate_file(evaluating(int8)), progress)
    test_names = splits_for(load_filter(model, trust)[1], seqs, parse_size(DEMO_SIZE)).names("test")
    one = ADAPT_SEQUENCE if ADAPT_SEQUENCE in test_names else test_names[0]
    adapting = AdaptRequest(
        out / "slim.nnsl", out / "adapt", seqs, replace(AdaptConfig(), steps=mode.adapt_steps), "test", (one,),
        trust_factory=trust,
    )  # fmt: skip
    _step(f"adapt the slim filter to {one}", out / "adapt.json", lambda: adapt(adapting, progress), progress)
    progress.status("report")
    crops = _crops(model, out, seqs, trust)
    page = build_report(out, f"nnslim demo ({mode.name})", crops, assets.lowrank_table(), mode.cuts())
    seconds = time.perf_counter() - start
    params = {"out": str(out), "mode": mode.name, "model": str(model), "sequences": str(seqs)}
    results = {"seconds": seconds, "report": str(page), "evaluation": json.loads((out / "evaluate.json").read_text())}
    run_id = record(request.store, "demo", params, results, ["x265"])
    return DemoResult(out, mode.name, model, seqs, seconds, page, run_id)


def _crops(model: Path, out: Path, seqs: Path, trust: str | None) -> dict[str, Any]:
    """The visual comparison panels: the first test sequence at the filter's coarsest QP."""
    original, meta = load_filter(model, trust)
    decoded, _ = unpack((out / "slim.nnsl").read_bytes(), trust)
    codec, qp = meta["training"]["codec"], max(meta["training"]["qps"])
    splits = splits_for(meta, seqs, parse_size(DEMO_SIZE), 1, coding=(codec, (qp,)), cache=encode_cache(None))
    first = splits.pairs("test")[0]
    return crop_panels(original, decoded, first, f"{codec} QP {qp}")


def report(run_id: int, store: Path | None = None) -> Path:
    """Render a stored demo run's report again; returns the page.

    Raises:
        NnslimError: Not a demo run, or its folder no longer holds its results.
    """
    run = ResultsStore(store).run(run_id)
    if run.kind != "demo":
        raise NnslimError(f"run {run.id} is a {run.kind} run; reports are drawn from demo runs")
    out = Path(run.params["out"])
    if not (out / "evaluate.json").is_file():
        raise NnslimError(f"{out} no longer holds run {run.id}'s results")
    title = f"nnslim demo ({run.params['mode']}), run {run.id}"
    return build_report(out, title, None, assets.lowrank_table(), MODES[run.params["mode"]].cuts())
