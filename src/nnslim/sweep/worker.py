"""One sweep point, run where an executor puts it: compress, pack, unpack, evaluate.

Everything a point needs arrives in ``SharedInputs``: the filters' files and the decoded
frames, put once into each worker (local pool) or into Ray's object store. A worker reads no
project files and writes nothing but a scratch folder, so it can run on any node; the driver
alone writes results.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nnslim.bitstream.pack import pack, unpack
from nnslim.compress.context import Context
from nnslim.evaluate.runtime import torch_ms_per_frame
from nnslim.io import atomic_write_bytes, atomic_write_json
from nnslim.jobs.common import QUIET
from nnslim.jobs.compress import compress_pairs
from nnslim.models.data import LumaPairs
from nnslim.models.filters import kmac_per_pixel, parameter_count
from nnslim.models.train import TrainConfig, load_filter, save_filter, validate
from nnslim.sweep.space import SweepPoint, pack_config, recipe_for


@dataclass(frozen=True)
class FilterFile:
    """A filter as its two files' contents."""

    weights: bytes
    meta: dict[str, Any]

    def write(self, path: Path) -> Path:
        """Write the filter to ``path`` (and its ``.json`` beside it); returns ``path``."""
        atomic_write_bytes(path, self.weights)
        atomic_write_json(path.with_suffix(".json"), self.meta)
        return path


@dataclass(frozen=True)
class PairSet:
    """Decoded frames of one filter at one codec and QP, and the uncompressed filter's Y-PSNR on them.

    Attributes:
        train: Retraining frames.
        validation: Held out of training; every choice among points is made on them.
        test: Reported once per point, never used to choose.
        reference_validation_psnr_y: The uncompressed filter's Y-PSNR on ``validation``.
        reference_test_psnr_y: The uncompressed filter's Y-PSNR on ``test``.
    """

    train: list[LumaPairs]
    validation: list[LumaPairs]
    test: list[LumaPairs]
    reference_validation_psnr_y: float
    reference_test_psnr_y: float


@dataclass(frozen=True)
class SharedInputs:
    """What every point reads, shipped once per worker.

    Attributes:
        filters: Filter files by the name the sweep file gives them.
        pairs: Frames by ``pair_key``.
        threads: PyTorch threads of one point.
        repetitions: Timed 1080p frames per point.
        trusted_factory: The user architecture (``file.py:factory``) the filters may name.
    """

    filters: dict[str, FilterFile]
    pairs: dict[str, PairSet]
    threads: int
    repetitions: int
    trusted_factory: str | None = None


def pair_key(point: SweepPoint) -> str:
    """The key of a point's frames in ``SharedInputs.pairs``."""
    return f"{point.model}|{point.codec}|{point.qp}"


def run_point(inputs: SharedInputs, point: SweepPoint) -> dict[str, Any]:
    """Compress, pack, unpack and measure one point.

    Returns:
        The figures (``bytes``, ``parameters``, ``kmac_per_pixel``, ``loss_db`` on validation, by
        which points are chosen, ``test_loss_db``, ``psnr_y`` and ``gain_db`` on test,
        ``ms_per_1080p``, ``seconds``) and the packed file as ``file``.
    """
    start = time.perf_counter()
    torch.set_num_threads(inputs.threads)
    pairs = inputs.pairs[pair_key(point)]
    with tempfile.TemporaryDirectory(prefix="nnslim-sweep-") as name:
        scratch = Path(name)
        original = inputs.filters[point.model].write(scratch / "original.pt")
        model, meta = load_filter(original, inputs.trusted_factory)
        recipe = recipe_for(point.knobs)
        if recipe.stages:
            base = TrainConfig.from_dict(meta["training"])
            base = dataclasses.replace(base, codec=point.codec, qps=(point.qp,), threads=inputs.threads)
            ctx = Context(pairs.train, pairs.validation, [], base, math.inf)
            compressed, _steps, _ = compress_pairs(
                original, recipe, ctx, scratch / "compress", QUIET, inputs.trusted_factory
            )
            save_filter(compressed, scratch / "slim.pt", meta)
            model, meta = load_filter(scratch / "slim.pt", inputs.trusted_factory)
    data = pack(model, meta, pack_config(point.knobs))
    decoded, _ = unpack(data, trusted_factory=inputs.trusted_factory)
    validation = validate(decoded, pairs.validation, frame_step=1)
    quality = validate(decoded, pairs.test, frame_step=1)
    timing = torch_ms_per_frame(decoded, repetitions=inputs.repetitions, threads=inputs.threads)
    return {
        "bytes": len(data),
        "parameters": parameter_count(decoded),
        "kmac_per_pixel": kmac_per_pixel(decoded),
        "psnr_y": quality["psnr_y_filtered"],
        "gain_db": quality["gain_db"],
        "loss_db": pairs.reference_validation_psnr_y - validation["psnr_y_filtered"],
        "test_loss_db": pairs.reference_test_psnr_y - quality["psnr_y_filtered"],
        "ms_per_1080p": timing["median_ms"],
        "seconds": time.perf_counter() - start,
        "file": data,
    }


def attempt(inputs: SharedInputs, point: SweepPoint) -> dict[str, Any]:
    """``run_point``, with an error turned into a failed outcome so that the sweep goes on.

    Returns:
        ``{"status": "done", **figures}`` or ``{"status": "failed", "error": ..., "traceback": ...}``.
    """
    try:
        return {"status": "done", **run_point(inputs, point)}
    except Exception as exc:  # a failed point is recorded, whatever it raised
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
