"""What a compression run retrains on and measures with, handed in by its caller."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from nnslim.models.data import LumaPairs
from nnslim.models.train import TrainConfig

Log = Callable[[str], None]


@dataclass(frozen=True)
class Speed:
    """How fast models run in one runtime: medians of interleaved runs after a warm-up, the thread count fixed.

    Attributes:
        runtime: The runtime timed (``torch``, ``onnxruntime`` or ``onnxruntime_int8``).
        frames: Milliseconds per 1920x1080 frame of each filter given, timed in turns: its median
            and its fastest run.
        layers: Milliseconds per call of each layer given on an input of the given shape, timed in turns.
    """

    runtime: str
    frames: Callable[[Sequence[nn.Module]], list[tuple[float, float]]]
    layers: Callable[[Sequence[nn.Module], tuple[int, int, int, int]], list[float]]


@dataclass(frozen=True)
class Context:
    """What a run retrains on and measures with.

    Attributes:
        train: Pairs of the train split, for retraining and calibration.
        validation: Held-out train-split pairs; the loss budget is judged on them.
        test: Test-split pairs, reported at each step.
        base: The filter's training settings (architecture, codec, QPs, seed, threads).
        max_loss: Y-PSNR loss budget in dB against the uncompressed filter, on validation.
        speed: Times each step against the model it would replace; None: not timed.
        objective: The recipe's objective (``Recipe.objective``), for the stages that act on it.
        status: Told what is being done, for a progress display.
    """

    train: list[LumaPairs]
    validation: list[LumaPairs]
    test: list[LumaPairs]
    base: TrainConfig
    max_loss: float
    speed: Speed | None = None
    objective: str = "size"
    status: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        """Tell ``status``, if there is one, what is being done."""
        if self.status:
            self.status(text)
