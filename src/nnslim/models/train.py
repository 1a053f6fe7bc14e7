"""Training a filter on patch pairs, with exact resume from checkpoints, and the filter file format.

A filter file ``NAME.pt`` is a plain state dict (loadable with ``torch.load(weights_only=True)``)
and ``NAME.json`` beside it describes it: architecture, training data and settings, and the
validation PSNR measured at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import platform
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes, atomic_write_json, sha256_file
from nnslim.models import layers
from nnslim.models.apply import filter_frames
from nnslim.models.data import LumaPairs, sample_batch
from nnslim.models.filters import ArchSpec, build, is_trusted, takes_qp
from nnslim.video.metrics import psnr_frames

FORMAT = "nnslim-filter"
MAX_LINEAGE = 32
"""Training runs that ``lineage`` follows back at most (files whose ``init`` name each other would loop)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        arch: The architecture.
        codec: Codec whose decoded frames are restored.
        qps: Ladder QPs of the training encodes.
        steps: Optimiser steps in all.
        batch: Patches per step.
        patch: Patch side in pixels.
        lr: Peak learning rate of Adam.
        warmup: Steps of linear warm-up before the cosine decay to ``lr * final_lr_ratio``.
        final_lr_ratio: Learning rate at the last step, relative to ``lr``.
        loss: ``mse`` or ``l1``.
        margin: Pixels at each patch edge left out of the loss. Their outputs see the zero
            padding of the patch edge, which tiles never show a filter inside a frame.
        seed: Seeds the weights and the patch sampling.
        checkpoint_every: Steps between checkpoints (and validations).
        threads: CPU threads (all cores when None); a run may resume with another count.
        train_sequences: Names of the sequences the patches come from.
        validation_sequences: Names of the held-out sequences validated on.
        init: Filter file whose weights start the run (a fine-tune), or None for a fresh start.
    """

    arch: ArchSpec
    codec: str = "x265"
    qps: tuple[int, ...] = (37,)
    steps: int = 2000
    batch: int = 16
    patch: int = 64
    lr: float = 1e-3
    warmup: int = 100
    final_lr_ratio: float = 0.02
    loss: str = "mse"
    margin: int = 0
    seed: int = 0
    checkpoint_every: int = 100
    threads: int | None = None
    train_sequences: tuple[str, ...] = field(default=())
    validation_sequences: tuple[str, ...] = field(default=())
    init: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TrainConfig:
        """The settings from ``to_dict`` or from a filter description's ``training`` (extra keys ignored)."""
        names = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in data.items() if k in names}
        values["arch"] = ArchSpec.from_dict(values["arch"])
        for key in ("qps", "train_sequences", "validation_sequences"):
            values[key] = tuple(values[key])
        return TrainConfig(**values)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay from ``lr`` to ``lr * final_lr_ratio``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(config.steps - config.warmup, 1)
    floor = config.lr * config.final_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def forward(model: nn.Module, x: torch.Tensor, qp: torch.Tensor) -> torch.Tensor:
    """Run a filter on a batch, passing the QP only to filters that take it."""
    return model(x, qp) if takes_qp(model) else model(x)


def _inner(batch: torch.Tensor, margin: int) -> torch.Tensor:
    return batch[..., margin : batch.shape[-2] - margin, margin : batch.shape[-1] - margin]


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    pairs: list[LumaPairs],
    rng: np.random.Generator,
    step: int,
) -> float:
    """One optimiser step on a freshly drawn batch; returns the loss."""
    run_device = next(model.parameters()).device
    x, y, qp = sample_batch(pairs, rng, config.batch, config.patch)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, step)
    restored = forward(model, x.to(run_device), qp.to(run_device))
    loss_fn = nn.MSELoss() if config.loss == "mse" else nn.L1Loss()
    loss = loss_fn(_inner(restored, config.margin), _inner(y.to(run_device), config.margin))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def finetune(
    model: nn.Module, pairs: list[LumaPairs], config: TrainConfig, on_step: Callable[[int], None] | None = None
) -> float:
    """Train an existing model in place for ``config.steps`` steps (no checkpoints); returns the last loss.

    Compression uses it for its short retraining after each cut. Parametrizations on the
    model's weights (sparsity masks, shared weights, fake quantization) hold throughout.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    run_device = device()
    model.to(run_device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    loss = float("nan")
    for step in range(config.steps):
        loss = _step(model, optimizer, config, pairs, rng, step)
        if on_step:
            on_step(step + 1)
    model.cpu().eval()
    return loss


def validate(model: nn.Module, pairs: list[LumaPairs], frame_step: int = 8, tile: int = 256) -> dict[str, float]:
    """Mean Y-PSNR of decoded and filtered frames (every ``frame_step``-th frame) of each pair.

    Frames are filtered in tiles of ``tile`` pixels, as `nnslim filter` runs; ``WHOLE_FRAME``
    filters each frame in one piece, which is faster on small frames.
    """
    model = model.cpu()
    before, after = [], []
    for pair in pairs:
        decoded, original = pair.decoded[::frame_step], pair.original[::frame_step]
        filtered = filter_frames(model, decoded, pair.qp, tile)
        before.append(float(np.mean(psnr_frames(original, decoded))))
        after.append(float(np.mean(psnr_frames(original, filtered))))
    return {
        "psnr_y_codec": float(np.mean(before)),
        "psnr_y_filtered": float(np.mean(after)),
        "gain_db": float(np.mean(after) - np.mean(before)),
    }


def validate_file(
    path: Path, model: nn.Module, pairs: list[LumaPairs], frame_step: int, cache: Path, tile: int = 256
) -> dict[str, float]:
    """``validate`` of a filter file's model, kept in ``cache`` so that measuring the same file on
    the same frames again costs nothing.

    The key is the file's SHA-256, ``frame_step`` and a SHA-256 of the measured frames (decoded
    and original) with their names and QPs, so a changed file or a re-encode is measured afresh.

    Args:
        path: The filter file ``model`` was loaded from.
        model: Its model.
        pairs: The frames.
        frame_step: Every this many frames are measured.
        cache: Folder of measurements (made if missing).
        tile: Tile side, as ``validate``'s.
    """
    digest = hashlib.sha256(f"{sha256_file(path)}|{frame_step}|{tile}".encode())
    for pair in pairs:
        digest.update(f"|{pair.name}|{pair.qp}|{pair.decoded.shape}".encode())
        digest.update(np.ascontiguousarray(pair.decoded[::frame_step]).data)
        digest.update(np.ascontiguousarray(pair.original[::frame_step]).data)
    stored = cache / f"{digest.hexdigest()}.json"
    if stored.is_file():
        try:
            result = json.loads(stored.read_text())
            if isinstance(result, dict) and all(isinstance(v, float) for v in result.values()):
                return result
        except ValueError:
            pass
    result = validate(model, pairs, frame_step, tile)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stored, result)
    return result


def _checkpoint_paths(out: Path) -> tuple[Path, Path]:
    return out.with_suffix(".ckpt.pt"), out.with_suffix(".ckpt.json")


def _save_checkpoint(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    weights, meta = _checkpoint_paths(out)
    buffer = _to_bytes({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    atomic_write_bytes(weights, buffer)
    atomic_write_json(meta, state)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _safe_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NnslimError(f"{path}: no such file") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... on bad files
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise NnslimError(f"{path}: not a plain state dict ({reason})") from None


def train(
    config: TrainConfig,
    train_pairs: list[LumaPairs],
    val_pairs: list[LumaPairs],
    out: Path,
    resume: bool = False,
    on_step: Callable[[int, float, dict[str, float] | None], None] | None = None,
) -> dict[str, Any]:
    """Train a filter and write ``out`` (state dict) and its JSON description.

    A checkpoint (weights, optimiser, sampler state) is written every
    ``checkpoint_every`` steps; with ``resume`` the run continues from it and gives the
    same weights as an uninterrupted run.

    Args:
        config: Settings.
        train_pairs: Training patches are drawn from these.
        val_pairs: Held-out pairs for validation.
        out: The filter file to write (``.pt``).
        resume: Continue from the checkpoint beside ``out``.
        on_step: Called after each step with (step, loss, validation or None).

    Returns:
        The filter's JSON description.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = build(config.arch)
    init = None
    if config.init:
        weights, init = starting_weights(Path(config.init), config.arch)
        model.load_state_dict(weights)
    run_device = device()
    model.to(run_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    step, seconds, history = 0, 0.0, []
    ckpt_weights, ckpt_meta = _checkpoint_paths(out)
    if resume and ckpt_meta.is_file():
        state = json.loads(ckpt_meta.read_text())
        if replace(TrainConfig.from_dict(state["config"]), threads=config.threads) != config:
            raise NnslimError(f"{ckpt_meta} was written with other settings; resume with the same ones")
        saved = _safe_load(ckpt_weights)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = state["rng"]
        step, seconds, history = state["step"], state["seconds"], state["history"]
    model.train()
    while step < config.steps:
        started = time.perf_counter()
        loss_value = _step(model, optimizer, config, train_pairs, rng, step)
        step += 1
        seconds += time.perf_counter() - started
        report = None
        if step % config.checkpoint_every == 0 or step == config.steps:
            report = validate(model, val_pairs) if val_pairs else None
            model.to(run_device).train()
            history.append({"step": step, "loss": loss_value, "seconds": seconds, **(report or {})})
            _save_checkpoint(
                out,
                model,
                optimizer,
                {
                    "config": config.to_dict(),
                    "step": step,
                    "seconds": seconds,
                    "rng": rng.bit_generator.state,
                    "history": history,
                },
            )
        if on_step:
            on_step(step, loss_value, report)
    model.cpu()
    description = {
        "format": FORMAT,
        "version": 1,
        "arch": config.arch.to_dict(),
        "training": {**config.to_dict(), "seconds": seconds, "device": _hardware(run_device), "init_from": init},
        "validation": history[-1] if history else {},
        "history": history,
    }
    save_filter(model, out, description)
    return description


def _with_qp_plane(weights: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Widen the layers that read the input by zero weights for the QP plane, so the output is unchanged."""
    wanted = target.state_dict()
    out = {}
    for name, tensor in weights.items():
        shape = wanted[name].shape
        if tensor.dim() > 1 and tensor.shape[0] == shape[0] and tensor.shape[1] < shape[1]:
            wide = tensor.new_zeros(shape)
            wide[:, : tensor.shape[1]] = tensor
            tensor = wide
        out[name] = tensor
    return out


def starting_weights(path: Path, arch: ArchSpec) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights of a filter file to start a run of ``arch`` from, and what the description records of it.

    A filter without the QP input may start one with it: the QP plane's weights start at zero.
    The file is built only once its architecture is found to be ``arch``, the one the user chose
    to train, so a user factory is trusted by that choice.

    Raises:
        NnslimError: A file that does not load, or a filter of another architecture or settings.
    """
    theirs = _read_description(path)[1]
    if theirs != arch:
        qp_added = arch.kwargs.get("qp_input") and not theirs.kwargs.get("qp_input")
        without_qp = {k: v for k, v in arch.kwargs.items() if k != "qp_input"}
        if not (qp_added and ArchSpec(arch.name, without_qp) == ArchSpec(theirs.name, dict(theirs.kwargs))):
            raise NnslimError(
                f"{path} is a {theirs.name!r} filter of other settings; cannot start {arch.name!r} from it"
            )
    start, meta = load_filter(path, trusted_factory=arch.name)
    weights = start.state_dict() if theirs == arch else _with_qp_plane(start.state_dict(), build(arch))
    return weights, {"file": path.name, "sha256": sha256_file(path), "training": meta["training"]}


def lineage(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs that made a filter, first run first, following ``--init`` back.

    A run's starting filter is found in its recorded description (``init_from``) or, for a run
    that recorded only the file it started from (``init``), in that file's JSON if it still
    exists. At most ``MAX_LINEAGE`` runs are returned, so files that name each other cannot loop.
    """
    runs = [training]
    while len(runs) < MAX_LINEAGE and (earlier := _started_from(runs[0])) is not None:
        runs.insert(0, earlier)
    return runs


def _started_from(training: dict[str, Any]) -> dict[str, Any] | None:
    """The training settings of the filter a run started from, or None for a fresh start or a lost file."""
    recorded = training.get("init_from")
    if isinstance(recorded, dict) and isinstance(recorded.get("training"), dict):
        return recorded["training"]
    init = training.get("init")
    if not isinstance(init, str) or not Path(init).with_suffix(".json").is_file():
        return None
    earlier = _read_description(Path(init))[0].get("training")
    return earlier if isinstance(earlier, dict) else None


def _hardware(run_device: torch.device) -> str:
    if run_device.type == "cuda":
        return torch.cuda.get_device_name(run_device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads of {os.cpu_count()}"


def save_filter(model: nn.Module, path: Path, description: dict[str, Any]) -> None:
    """Write a filter file (state dict) and its JSON description, atomically.

    The description gains ``layers``: the layers whose shapes differ from what the architecture
    builds (empty unless the filter was compressed), which ``load_filter`` rebuilds.
    """
    reference = build(ArchSpec.from_dict(description["arch"]))
    atomic_write_bytes(path, _to_bytes(model.state_dict()))
    atomic_write_json(path.with_suffix(".json"), {**description, "layers": layers.changed(model, reference)})


def _read_description(path: Path) -> tuple[dict[str, Any], ArchSpec]:
    """The JSON description beside a filter file, and the architecture it names.

    Raises:
        NnslimError: A missing description, or one that names no architecture.
    """
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise NnslimError(f"{meta_path}: missing; a filter needs its JSON description beside it")
    try:
        meta = json.loads(meta_path.read_text())
        return meta, ArchSpec.from_dict(meta["arch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise NnslimError(f"{meta_path}: not a filter description ({exc})") from None


def load_filter(path: Path, trusted_factory: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a filter file and its JSON description into a runnable model in eval mode.

    Args:
        path: The filter file (``.pt``); its description is the ``.json`` beside it.
        trusted_factory: The user architecture (``file.py:factory``) that may be built if the
            description names it. A description naming any other user factory is refused, since
            building it runs its code; built-in architectures always load.

    Raises:
        NnslimError: Missing files, a user factory that is not trusted, a file that is not a
            plain state dict (pickled objects are refused), or weights that do not fit the architecture.
    """
    meta, arch = _read_description(path)
    if not is_trusted(arch.name, trusted_factory):
        raise NnslimError(
            f"{path}: its description names the user factory {arch.name!r}, whose code nnslim runs only "
            f"when told to: give --trust-factory {shlex.quote(arch.name)}"
        )
    state = _safe_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise NnslimError(f"{path}: expected a state dict of tensors")
    model = layers.apply(build(arch), meta.get("layers", {}))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise NnslimError(f"{path}: weights do not match architecture {arch.name!r} ({' '.join(first[:2])})") from None
    model.eval()
    return model, meta
