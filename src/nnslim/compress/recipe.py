"""Recipes: typed, composable compression plans, with named defaults and TOML files.

A recipe is a sequence of stages; each stage is a frozen dataclass whose ``gentler`` gives the
milder settings a run retries with when the stage overshoots the loss budget (None: it cannot be
made gentler, and the stage is dropped). In TOML, a recipe is a
list of ``[[stage]]`` tables, each with ``kind`` (``iterate``, ``prune``, ``lowrank``,
``quantize``) and that stage's fields; nested settings are sub-tables. ``objective`` and
``runtime`` (optional) say what the run optimises (``Recipe``)::

    name = "mine"
    objective = "speed"
    runtime = "onnxruntime_int8"
    [[stage]]
    kind = "iterate"
    rounds = 4
    [stage.finetune]
    steps = 200
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from nnslim.errors import NnslimError

OBJECTIVES = ("size", "speed")


@dataclass(frozen=True)
class FineTune:
    """Short retraining on the train split after a cut.

    Attributes:
        steps: Adam steps (0 skips the retraining).
        lr: Peak learning rate (cosine decay).
        batch: Patches per step.
        patch: Patch side in pixels.
    """

    steps: int = 600
    lr: float = 3e-4
    batch: int = 16
    patch: int = 64


@dataclass(frozen=True)
class Iterate:
    """BBC R&D's loop: sparsity, then activation-based channel removal, then retraining, repeated.

    Attributes:
        rounds: Most rounds.
        sparsity: Unstructured magnitude sparsity reached at the last round (a cubic schedule).
        scope: ``global`` (one threshold over all layers) or ``layer``.
        fraction: Share of the remaining channel units removed per round, lowest activation first.
        ranking: ``global`` (one ranking over all units) or ``group`` (each group loses
            ``fraction`` of its units; use it to shrink residual streams read by many layers).
        round_to: Keep channel counts at multiples of this where possible.
        minimum: Fewest channels kept in any group.
        target: Stop once the parameters are at most this fraction of the original.
        prune_output: Let sparsity reach the layers that write the output (left dense by default).
        finetune: Retraining after each round.
    """

    rounds: int = 8
    sparsity: float = 0.3
    scope: str = "global"
    fraction: float = 0.2
    ranking: str = "global"
    round_to: int = 8
    minimum: int = 8
    target: float = 0.14
    prune_output: bool = False
    finetune: FineTune = field(default_factory=lambda: FineTune(steps=1000))

    def __post_init__(self) -> None:
        if self.ranking not in ("global", "group"):
            raise NnslimError(f"iterate: ranking must be global or group, not {self.ranking!r}")

    def gentler(self) -> Self | None:
        """None: a round over the loss budget ends the stage, keeping the rounds before it (fewer rounds)."""
        return None


@dataclass(frozen=True)
class Prune:
    """Deep Compression's first step: magnitude pruning to a sparsity, then retraining (masks held).

    Attributes:
        sparsity: Fraction of weights set to zero.
        scope: ``global`` or ``layer``.
        prune_output: Let sparsity reach the layers that write the output (left dense by default).
        finetune: Retraining with the masks held.
    """

    sparsity: float = 0.7
    scope: str = "layer"
    prune_output: bool = False
    finetune: FineTune = field(default_factory=FineTune)

    def gentler(self) -> Self | None:
        """Half the sparsity; None at sparsity 0."""
        return dataclasses.replace(self, sparsity=self.sparsity / 2) if self.sparsity > 0 else None


@dataclass(frozen=True)
class LowRank:
    """Seed 002 (Tai et al.): d x d convolutions split into d x 1 and 1 x d, SVD-initialised.

    Attributes:
        layers: Convolutions to split (all square ones of kernel > 1 but the first and last
            when empty).
        ranks: Explicit rank per layer, in the order of ``layers``.
        energy: Otherwise, keep this fraction of each kernel's squared singular values.
        max_loss: Otherwise, the lowest energy within this Y-PSNR loss (dB) on validation.
        finetune: Retraining afterwards.
    """

    layers: tuple[str, ...] = ()
    ranks: tuple[int, ...] = ()
    energy: float | None = 0.9
    max_loss: float | None = None
    finetune: FineTune = field(default_factory=FineTune)

    def gentler(self) -> Self | None:
        """Half the ``max_loss`` when set, else the energy halfway to 1; None with explicit ranks or nothing left."""
        if self.ranks:
            return None
        if self.max_loss is not None:
            return dataclasses.replace(self, max_loss=self.max_loss / 2) if self.max_loss > 0 else None
        if self.energy is not None and self.energy < 1:
            return dataclasses.replace(self, energy=(1 + self.energy) / 2)
        return None


GENTLEST_BITS = 8


@dataclass(frozen=True)
class Quantize:
    """NNR / Deep Compression weight quantization; shared weights stay shared.

    Attributes:
        method: ``kmeans`` (weight sharing, centroids fine-tuned) or ``uniform``.
        bits: log2 of the clusters, or of the uniform levels.
        per_channel: Uniform scale per output channel instead of per tensor.
        finetune: Quantization-aware retraining.
    """

    method: str = "kmeans"
    bits: int = 6
    per_channel: bool = True
    finetune: FineTune = field(default_factory=FineTune)

    def gentler(self) -> Self | None:
        """One bit more, up to ``GENTLEST_BITS``; None from there."""
        return dataclasses.replace(self, bits=self.bits + 1) if self.bits < GENTLEST_BITS else None


Stage = Iterate | Prune | LowRank | Quantize
KINDS: dict[str, type[Stage]] = {"iterate": Iterate, "prune": Prune, "lowrank": LowRank, "quantize": Quantize}


@dataclass(frozen=True)
class Recipe:
    """A named sequence of stages, and what a run of it optimises.

    Attributes:
        name: The recipe's name.
        stages: Its stages, in order.
        objective: ``size``: keep every step within the loss budget. ``speed``: also drop a step
            that changes the network's shapes and runs slower than the model before it in
            ``runtime``, and split a kernel into a low-rank pair only where ``runtime`` runs the pair faster.
        runtime: Where speed is measured: ``torch``, ``onnxruntime`` or ``onnxruntime_int8``.
    """

    name: str
    stages: tuple[Stage, ...]
    objective: str = "size"
    runtime: str = "torch"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise NnslimError(f"a recipe's objective is one of {', '.join(OBJECTIVES)}, not {self.objective!r}")

    def to_dict(self) -> dict[str, Any]:
        stages = [{"kind": kind_of(s), **dataclasses.asdict(s)} for s in self.stages]
        return {"name": self.name, "objective": self.objective, "runtime": self.runtime, "stage": stages}


def kind_of(stage: Stage) -> str:
    """The TOML ``kind`` of a stage.

    Raises:
        NnslimError: The stage's type is not in ``KINDS``.
    """
    kinds = {cls: name for name, cls in KINDS.items()}
    if type(stage) not in kinds:
        raise NnslimError(f"{type(stage).__name__} is not a recipe stage; known: {', '.join(KINDS)}")
    return kinds[type(stage)]


def _make(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := set(data) - known:
        raise NnslimError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values = {}
    for key, value in data.items():
        if hints[key] is FineTune:
            if not isinstance(value, dict):
                raise NnslimError(f"{where}.{key}: expected a table")
            value = _make(FineTune, value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    return cls(**values)


def from_dict(data: dict[str, Any]) -> Recipe:
    """A recipe from its dictionary (as ``to_dict`` or a TOML file gives it).

    Raises:
        NnslimError: Unknown stage kinds or fields.
    """
    stages = []
    for i, raw in enumerate(data.get("stage", [])):
        raw = dict(raw)
        kind = raw.pop("kind", None)
        if kind not in KINDS:
            raise NnslimError(f"stage {i + 1}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
        stages.append(_make(KINDS[kind], raw, f"stage {i + 1} ({kind})"))
    if not stages:
        raise NnslimError("a recipe needs at least one [[stage]]")
    objective, runtime = str(data.get("objective", "size")), str(data.get("runtime", "torch"))
    return Recipe(str(data.get("name", "custom")), tuple(stages), objective, runtime)


BBC = Recipe("bbc", (Iterate(),))
DEEP_COMPRESSION = Recipe("deep-compression", (Prune(), Quantize(method="kmeans", bits=5)))
LOWRANK = Recipe("lowrank", (LowRank(),))
FULL = Recipe("full", (*BBC.stages, *LOWRANK.stages, Quantize(method="uniform", bits=8)))
NAMED = {r.name: r for r in (BBC, DEEP_COMPRESSION, LOWRANK, FULL)}


def load(name_or_path: str) -> Recipe:
    """A named recipe (``bbc``, ``deep-compression``, ``lowrank``, ``full``) or a TOML file.

    Raises:
        NnslimError: Neither a known name nor a readable recipe file.
    """
    if name_or_path in NAMED:
        return NAMED[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise NnslimError(f"unknown recipe {name_or_path!r}: give one of {', '.join(NAMED)} or a TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NnslimError(f"{path}: not a TOML recipe ({exc})") from None
    return from_dict(data)
