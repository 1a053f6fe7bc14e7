"""The sweep file: which filters, codecs, QPs and compression settings to try, and how to pick points.

A sweep file is TOML with two tables. ``[sweep]`` says what is compressed and how each point
is measured; ``[space]`` gives each compression knob a list of values (or one value)::

    [sweep]
    models = ["models/postfilter_x265_qp37.pt"]
    sequences = "data/sequences"
    sampler = "grid"                 # or "random", with samples = N and seed
    budgets = [0.05, 0.1]            # Y-PSNR loss budgets (dB) for the best configurations

    [space]
    fraction = [0.0, 0.25, 0.5]      # share of channels removed by activation pruning
    energy = [1.0, 0.9]              # low-rank energy; 1.0 leaves the kernels whole
    bits = [8, 6]
    nnr_qp = [-32, -24]

The knobs take the names of the recipe's fields (``compress.recipe``) and of the pack options
(``bitstream.pack.PackConfig``). The old names ``activation``, ``quantizer`` and ``coder_qp``
(``KNOB_ALIASES``) are still read, with a ``DeprecationWarning``; a point's settings are written
under both names.

A point's knobs become a recipe (``recipe_for``) in a fixed order: sparsity pruning (with
activation pruning when ``fraction`` > 0), then low-rank splitting, then quantization. The
coder settings then pack it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnslim.bitstream.pack import CODERS, PackConfig
from nnslim.compress.recipe import FineTune, Iterate, LowRank, Prune, Quantize, Recipe, Stage
from nnslim.errors import NnslimError

OBJECTIVES = ("bytes", "ms_per_1080p", "loss_db")
KNOB_ALIASES = {"activation": "fraction", "quantizer": "method", "coder_qp": "nnr_qp"}
"""Old knob names, each to the name that replaced it."""
_OLD_NAMES = {new: old for old, new in KNOB_ALIASES.items()}


@dataclass(frozen=True)
class Knobs:
    """The compression settings of one point.

    Attributes:
        sparsity: Unstructured magnitude sparsity (0 for none).
        fraction: Share of channels removed per round by activation pruning (0 for none; was ``activation``).
        rounds: Rounds of sparsity + activation pruning.
        energy: Low-rank energy kept per split kernel (1.0: no split).
        method: ``none``, ``uniform`` or ``kmeans`` (k = 2**bits shared weights per layer; was ``quantizer``).
        bits: Quantization bits.
        coder: The file's coder (``nnr``, ``huffman`` or ``raw``).
        nnr_qp: NNR QP of the weights (was ``coder_qp``).
        finetune_steps: Retraining steps after each stage (0 for none).
    """

    sparsity: float = 0.0
    fraction: float = 0.0
    rounds: int = 1
    energy: float = 1.0
    method: str = "none"
    bits: int = 8
    coder: str = "nnr"
    nnr_qp: int = -32
    finetune_steps: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("none", "uniform", "kmeans"):
            raise NnslimError(f"method must be none, uniform or kmeans, not {self.method!r}")
        if self.coder not in CODERS:
            raise NnslimError(f"coder must be one of {', '.join(CODERS)}, not {self.coder!r}")


@dataclass(frozen=True)
class SweepPoint:
    """One point: a filter, the codec and QP it is measured at, and the compression settings."""

    model: str
    codec: str
    qp: int
    knobs: Knobs

    def to_dict(self) -> dict[str, Any]:
        """The point as JSON values, each renamed knob under its old name too (``with_aliases``)."""
        return self._settings() | {"knobs": with_aliases(dataclasses.asdict(self.knobs))}

    def key(self) -> str:
        """A short stable name: the same settings always give the same key (old knob names play no part)."""
        text = json.dumps(self._settings(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _settings(self) -> dict[str, Any]:
        return {"model": self.model, "codec": self.codec, "qp": self.qp, "knobs": dataclasses.asdict(self.knobs)}


def with_aliases(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knob values by today's names, each renamed knob also under its old name, right after it.

    Takes a point's knobs by either name (a row written before the rename has the old ones
    only), so that readers of either name find every knob.
    """
    out: dict[str, Any] = {}
    for name, value in knobs.items():
        new = KNOB_ALIASES.get(name, name)
        out.setdefault(new, value)
        if new in _OLD_NAMES:
            out.setdefault(_OLD_NAMES[new], value)
    return out


@dataclass(frozen=True)
class SweepConfig:
    """A sweep file's ``[sweep]`` table and its space.

    Attributes:
        models: Filter files to compress.
        sequences: Sequence folder (with ``sequences.json``).
        codecs: Codecs to measure at (each filter's own codec when empty).
        qps: QPs to measure at (each filter's own QP when empty).
        split: Sequences the loss is measured on; only ``test`` is allowed.
        max_size: Test sequences up to WxH.
        frames: First frames of each test sequence.
        repetitions: Timed 1080p frames per point.
        sampler: ``grid`` (every combination) or ``random`` (``samples`` combinations).
        samples: Points drawn by the random sampler.
        seed: Seed of the random sampler.
        objectives: What is minimised, from ``bytes``, ``ms_per_1080p`` and ``loss_db``.
        budgets: Y-PSNR loss budgets (dB) for the best configurations.
        space: Knob name to the values tried.
    """

    models: tuple[str, ...]
    sequences: str = "data/sequences"
    codecs: tuple[str, ...] = ()
    qps: tuple[int, ...] = ()
    split: str = "test"
    max_size: str | None = "416x240"
    frames: int | None = 8
    repetitions: int = 1
    sampler: str = "grid"
    samples: int = 24
    seed: int = 0
    objectives: tuple[str, ...] = OBJECTIVES
    budgets: tuple[float, ...] = (0.05,)
    space: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.models:
            raise NnslimError("[sweep] models: give at least one filter file")
        if self.split != "test":
            raise NnslimError(
                f"[sweep] split: the loss is measured on held-out sequences; use test, not {self.split!r}"
            )
        if self.sampler not in ("grid", "random"):
            raise NnslimError(f"[sweep] sampler must be grid or random, not {self.sampler!r}")
        if unknown := set(self.objectives) - set(OBJECTIVES):
            raise NnslimError(f"[sweep] objectives: unknown {', '.join(sorted(unknown))}; use {', '.join(OBJECTIVES)}")
        known = {f.name for f in dataclasses.fields(Knobs)}
        if unknown := set(self.space) - known:
            raise NnslimError(
                f"[space]: unknown knob(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        if any(len(values) == 0 for values in self.space.values()):
            raise NnslimError("[space]: every knob needs at least one value")


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list) else (value,)


def _renamed(space: dict[str, Any], path: Path) -> dict[str, Any]:
    """A ``[space]`` table with each old knob name replaced by today's (order kept), with a deprecation warning.

    Raises:
        NnslimError: A knob given by both names.
    """
    out = {}
    for name, values in space.items():
        new = KNOB_ALIASES.get(name)
        if new is None:
            out[name] = values
            continue
        if new in space:
            raise NnslimError(f"{path}: [space] gives both {name} and {new}, one knob; give only {new}")
        warnings.warn(f"{path}: [space] knob {name} is deprecated; it is now {new}", DeprecationWarning, stacklevel=3)
        out[new] = values
    return out


def load(path: Path) -> SweepConfig:
    """Read a sweep file; a knob under its old name (``KNOB_ALIASES``) is read as today's, with a DeprecationWarning.

    Raises:
        NnslimError: Unreadable TOML, unknown fields or knobs, a knob given by both names, or bad values.
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise NnslimError(f"{path}: not a readable sweep file ({exc})") from None
    if unknown := set(data) - {"sweep", "space"}:
        raise NnslimError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; use [sweep] and [space]")
    settings = dict(data.get("sweep", {}))
    known = {f.name for f in dataclasses.fields(SweepConfig)} - {"space"}
    if unknown := set(settings) - known:
        raise NnslimError(f"{path}: unknown [sweep] field(s) {', '.join(sorted(unknown))}")
    for key in ("models", "codecs", "qps", "objectives", "budgets"):
        if key in settings:
            settings[key] = _tuple(settings[key])
    space = {name: _tuple(values) for name, values in _renamed(data.get("space", {}), path).items()}
    try:
        return SweepConfig(**settings, space=space)
    except TypeError as exc:
        raise NnslimError(f"{path}: {exc}") from None


def knob_settings(config: SweepConfig) -> list[Knobs]:
    """The knob combinations to run: all of them (grid) or ``samples`` drawn without repeats (random)."""
    names = list(config.space)
    grid = [dict(zip(names, values, strict=True)) for values in itertools.product(*config.space.values())]
    if config.sampler == "random" and config.samples < len(grid):
        rng = np.random.default_rng(config.seed)
        grid = [grid[i] for i in sorted(rng.choice(len(grid), config.samples, replace=False))]
    try:
        return [Knobs(**values) for values in grid]
    except TypeError as exc:
        raise NnslimError(f"[space]: {exc}") from None


def points(config: SweepConfig, trained_for: dict[str, tuple[str, int]]) -> list[SweepPoint]:
    """Every point of the sweep, in a fixed order.

    Args:
        config: The sweep.
        trained_for: Each model's own codec and QP, used where the sweep names none.
    """
    out = []
    for model in config.models:
        codecs = config.codecs or (trained_for[model][0],)
        qps = config.qps or (trained_for[model][1],)
        for codec, qp, knobs in itertools.product(codecs, qps, knob_settings(config)):
            out.append(SweepPoint(model, codec, qp, knobs))
    return out


def recipe_for(knobs: Knobs) -> Recipe:
    """The compression recipe of a point's knobs (no stages when every knob is off)."""
    tune = FineTune(steps=knobs.finetune_steps)
    stages: list[Stage] = []
    if knobs.fraction > 0:
        stages.append(
            Iterate(rounds=knobs.rounds, sparsity=knobs.sparsity, fraction=knobs.fraction, target=0.0, finetune=tune)
        )
    elif knobs.sparsity > 0:
        stages.append(Prune(sparsity=knobs.sparsity, scope="global", finetune=tune))
    if knobs.energy < 1.0:
        stages.append(LowRank(energy=knobs.energy, finetune=tune))
    if knobs.method != "none":
        stages.append(Quantize(method=knobs.method, bits=knobs.bits, finetune=tune))
    return Recipe("sweep", tuple(stages))


def pack_config(knobs: Knobs) -> PackConfig:
    """The coding settings of a point."""
    return PackConfig(coder=knobs.coder, nnr_qp=knobs.nnr_qp, bits=knobs.bits)
