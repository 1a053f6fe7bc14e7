"""Run a recipe: cut, retrain, measure, repeat, keeping the best model within the loss budget.

Every step is logged with its parameters, kMAC per pixel, validation and test Y-PSNR and
milliseconds per 1920x1080 frame, and saved, so that an interrupted run resumes after its last
finished step. Decisions (the loss budget, the ranks for a loss target) use the validation
sequences, which are held out of the train split; the test split is only reported.

One rule holds for every stage: a step whose validation loss against the original exceeds the
budget is retried with the stage's ``gentler`` settings, at most ``ATTEMPTS`` times in all, and
then dropped (the model before it is kept). Under the recipe objective ``speed``, a step within
the budget that changes the network's shapes and runs clearly slower than the model before it
(its fastest run slower than that model's median, timed in turns with it) is dropped too.
Each step's row says which: ``outcome`` is ``kept``, ``retried`` or ``dropped``, ``attempt``
counts from 1. A dropped round of a multi-round stage (``iterate``) ends that stage.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.compress import quantize
from nnslim.compress.context import Context, Log
from nnslim.compress.recipe import Recipe, Stage, kind_of
from nnslim.compress.stages import Progress, handler_for
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_json, json_safe
from nnslim.models.filters import kmac_per_pixel, parameter_count, takes_qp
from nnslim.models.train import load_filter, save_filter, validate

__all__ = ["ATTEMPTS", "Context", "Log", "Run", "is_identity", "measure"]

ATTEMPTS = 3  # the first try and at most two gentler ones


def is_identity(model: nn.Module, ctx: Context) -> bool:
    """Whether a filter returns its input unchanged on a training frame (it has collapsed)."""
    pair = ctx.train[0]
    x = torch.from_numpy(pair.decoded[:1, None].astype(np.float32) / 255.0)
    inputs = (x, torch.full((1,), float(pair.qp))) if takes_qp(model) else (x,)
    model.eval()
    with torch.no_grad():
        return bool((model(*inputs) - inputs[0]).abs().max() == 0)


def measure(model: nn.Module, ctx: Context, before: nn.Module | None = None) -> dict[str, Any]:
    """Size, complexity, quality and speed of one model, and whether it collapsed to the identity.

    With ``ctx.speed``, the model is timed in turns with ``before`` (the model it would replace),
    and ``ms_before`` is that model's time in the same measurement.
    """
    ctx.say("measuring")
    val = validate(model, ctx.validation)
    test = validate(model, ctx.test) if ctx.test else {}
    ms: tuple[float | None, float | None] = (None, None)
    ms_before: float | None = None
    if ctx.speed:
        ctx.say(f"timing in {ctx.speed.runtime}")
        if before is None:
            (ms,) = ctx.speed.frames([model])
        else:
            (ms_before, _), ms = ctx.speed.frames([before, model])
    return {
        "identity": is_identity(model, ctx),
        "parameters": parameter_count(model),
        "kmac_per_pixel": kmac_per_pixel(model),
        "validation_psnr_y": val["psnr_y_filtered"],
        "test_psnr_y": test.get("psnr_y_filtered", float("nan")),
        "test_gain_db": test.get("gain_db", float("nan")),
        "ms_per_1080p": ms[0],
        "fastest_ms": ms[1],
        "ms_before": ms_before,
    }


def _gentled(stage: Stage, attempt: int) -> Stage:
    """The stage's settings at ``attempt`` (1: as in the recipe; each later one ``gentler``)."""
    settings: Stage | None = stage
    for _ in range(attempt - 1):
        settings = settings.gentler() if settings is not None else None
    if settings is None:
        raise NnslimError(f"the {kind_of(stage)} stage has no attempt {attempt}: it cannot be made that gentle")
    return settings


def _changes(stage: Stage, settings: Stage) -> dict[str, Any]:
    """The fields of ``settings`` that differ from the recipe's ``stage``, as saved."""
    recipe, used = dataclasses.asdict(stage), dataclasses.asdict(settings)
    return json_safe({k: v for k, v in used.items() if v != recipe[k]})


def _describe(changes: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in changes.items())


def _timing(row: dict[str, Any], ctx: Context) -> str:
    """``, 812 ms per 1080p frame (step before: 1,003 ms; torch, 2 threads)``, or nothing when not timed."""
    if row["ms_per_1080p"] is None or ctx.speed is None:
        return ""
    before = f"step before: {row['ms_before']:,.0f} ms; " if row.get("ms_before") is not None else ""
    return f", {row['ms_per_1080p']:,.0f} ms per 1080p frame ({before}{ctx.speed.runtime})"


def _slower(row: dict[str, Any], before: dict[str, Any], ctx: Context) -> bool:
    """Under the ``speed`` objective, whether a step that changed the network's shapes runs slower than ``before``.

    Slower means clearly so: even its fastest run is slower than the median of the model before
    it, timed in the same turns. A step that keeps every shape (sparsity, quantization) runs the
    same dense kernels, so the clock does not judge it.
    """
    timed = row.get("fastest_ms") is not None and row.get("ms_before") is not None
    reshaped = row["kmac_per_pixel"] != before["kmac_per_pixel"]
    return ctx.objective == "speed" and timed and reshaped and row["fastest_ms"] > row["ms_before"]


def _merge_codebooks(settings: dict[str, dict[str, Any]], tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each layer's quantization settings with its final codebook."""
    return {name: {**settings.get(name, {}), **table} for name, table in tables.items()}


class Run:
    """One compression run in an output folder: its steps, its saved models, and resuming.

    ``trusted_factory`` is the user architecture (``file.py:factory``) that the original filter,
    and so every step saved from it, may name (see ``load_filter``).
    """

    def __init__(
        self, original: Path, recipe: Recipe, ctx: Context, out: Path, log: Log, trusted_factory: str | None = None
    ) -> None:
        self.original, self.recipe, self.ctx, self.out, self.log = original, recipe, ctx, out, log
        self.trusted_factory = trusted_factory
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.model, self.meta = load_filter(original, trusted_factory)
        self.kept = 0  # the step whose model ``self.model`` is
        self.steps: list[dict[str, Any]] = []
        settings = {"recipe": recipe.to_dict(), "original": str(original), "max_loss": ctx.max_loss}
        self.settings = json.loads(json.dumps(settings))  # as saved: tuples become lists

    def _measure(self, model: nn.Module, stage: int, round_index: int, attempt: int) -> dict[str, Any]:
        """A step's row, measured: its place, its figures and its loss against the original."""
        row: dict[str, Any] = {"stage": stage, "kind": kind_of(self.recipe.stages[stage]) if stage >= 0 else "original"}
        before = self.model if self.steps else None
        row |= {"round": round_index, "attempt": attempt, **measure(model, self.ctx, before)}
        row["loss_db"] = self.steps[0]["validation_psnr_y"] - row["validation_psnr_y"] if self.steps else 0.0
        row["within_budget"] = row["loss_db"] <= self.ctx.max_loss
        return row

    def _save(self) -> None:
        atomic_write_json(self.work / "steps.json", {"settings": self.settings, "steps": self.steps})

    def _commit(self, row: dict[str, Any], model: nn.Module, note: str = "", rounds: bool = False) -> None:
        """Append a step's row, save its model and the rows, and log it with ``note`` (and its round if ``rounds``)."""
        self.steps.append(json_safe(row))  # as saved: what was not measured is None
        index = len(self.steps) - 1
        save_filter(model, self.work / f"step{index:03d}.pt", self.meta)
        self._save()
        note = "; ".join(part for part in (row.get("note", ""), note) if part)
        where = (f", round {row['round'] + 1}" if rounds else "") + (
            f", attempt {row['attempt']}" if row["attempt"] > 1 else ""
        )
        self.log(
            f"step {index} ({row['kind']}{where}): {row['parameters']:,} parameters, "
            f"{row['kmac_per_pixel']:.1f} kMAC/px, validation loss {row['loss_db']:+.3f} dB"
            + _timing(row, self.ctx)
            + ("; the filter has collapsed to the identity (it no longer changes its input)" if row["identity"] else "")
            + (f"; {note}" if note else "")
        )

    def _resume(self) -> tuple[int, int, int]:
        """Load the saved steps, if any; returns the stage, round and attempt to go on from."""
        path = self.work / "steps.json"
        if not path.is_file():
            return 0, 0, 1
        saved = json.loads(path.read_text())
        if saved["settings"] != self.settings:
            raise NnslimError(f"{path} was written with other settings; use another --out or the same settings")
        self.steps = saved["steps"]
        last = self.steps[-1]
        self.kept = last["kept"]
        self.model, _ = load_filter(self.work / f"step{self.kept:03d}.pt", self.trusted_factory)
        self.log(f"resuming after step {len(self.steps) - 1}")
        if last["stage"] < 0 or last["done"]:
            return last["stage"] + 1, 0, 1
        if last.get("outcome") == "retried":
            return last["stage"], last["round"], last.get("attempt", 1) + 1
        return last["stage"], last["round"] + 1, 1

    def best_within_budget(self) -> int:
        """Index of the smallest model (fewest parameters, then best validation) within the budget."""
        fits = [i for i, s in enumerate(self.steps) if s["within_budget"]]
        return min(fits, key=lambda i: (self.steps[i]["parameters"], -self.steps[i]["validation_psnr_y"]))

    def run(self) -> tuple[nn.Module, list[dict[str, Any]], dict[str, dict[str, Any]]]:
        """Run (or resume) every stage; returns the chosen model, the steps and quantization metadata.

        The quantization metadata is that of the last kept quantizing step: per layer, its
        settings and the codebook of its saved model (so a resumed run gives it too).
        """
        first_stage, first_round, first_attempt = self._resume()
        if not self.steps:
            row = self._measure(self.model, -1, 0, 1)
            self._commit(row | {"adjusted": {}, "outcome": "kept", "done": True, "kept": 0}, self.model)
        for index in range(first_stage, len(self.recipe.stages)):
            resumed = index == first_stage
            self._stage(index, first_round if resumed else 0, first_attempt if resumed else 1)
        return self.model, self.steps, self._quantization()

    def _stage(self, index: int, round_index: int, attempt: int) -> None:
        """Run one stage from a round and attempt, holding every step to the loss budget."""
        stage = self.recipe.stages[index]
        handler = handler_for(stage)
        settings = _gentled(stage, attempt)
        original_parameters = self.steps[0]["parameters"]
        while True:
            outcome = handler(copy.deepcopy(self.model), settings, Progress(round_index, original_parameters), self.ctx)
            row = self._measure(outcome.model, index, round_index, attempt) | outcome.info
            if outcome.note:
                row["note"] = outcome.note
            row["adjusted"] = _changes(stage, settings)
            if outcome.quantization is not None:
                row["quantization"] = outcome.quantization
            rounds = round_index > 0 or not outcome.last
            if row["within_budget"] and _slower(row, self.steps[self.kept], self.ctx):
                assert self.ctx.speed is not None  # _slower said so
                dropped = "round dropped, ending the stage" if rounds else "stage dropped"
                note = f"slower in {self.ctx.speed.runtime} (objective speed): {dropped}; keeping step {self.kept}"
                self._commit(row | {"outcome": "dropped", "done": True, "kept": self.kept}, outcome.model, note, rounds)
                return
            if row["within_budget"]:
                self.model, self.kept = outcome.model, len(self.steps)
                kept = row | {"outcome": "kept", "done": outcome.last, "kept": self.kept}
                self._commit(kept, outcome.model, "kept", rounds)
                if outcome.last:
                    return
                round_index, attempt, settings = round_index + 1, 1, stage
                continue
            gentler = settings.gentler() if attempt < ATTEMPTS else None
            over = f"over the loss budget of {self.ctx.max_loss:g} dB"
            if gentler is None:
                dropped = "round dropped, ending the stage" if rounds else "stage dropped"
                note = f"{over}: {dropped}; keeping step {self.kept}"
                self._commit(row | {"outcome": "dropped", "done": True, "kept": self.kept}, outcome.model, note, rounds)
                return
            note = f"{over}: retrying more gently ({_describe(_changes(stage, gentler))})"
            self._commit(row | {"outcome": "retried", "done": False, "kept": self.kept}, outcome.model, note, rounds)
            attempt, settings = attempt + 1, gentler

    def _quantization(self) -> dict[str, dict[str, Any]]:
        """Per layer, the settings and final codebook of the last kept step that quantized."""
        for index in range(len(self.steps) - 1, -1, -1):
            step = self.steps[index]
            if step.get("quantization") and step["outcome"] == "kept":
                model, _ = load_filter(self.work / f"step{index:03d}.pt", self.trusted_factory)
                return _merge_codebooks(step["quantization"], quantize.codebook_table(model))
        return {}
