"""What a compression run retrains on and measures with, handed in by its caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from nnslim.models.data import LumaPairs
from nnslim.models.train import TrainConfig

Log = Callable[[str], None]
Timer = Callable[[nn.Module], float]


@dataclass(frozen=True)
class Context:
    """What a run retrains on and measures with.

    Attributes:
        train: Pairs of the train split, for retraining and calibration.
        validation: Held-out train-split pairs; the loss budget is judged on them.
        test: Test-split pairs, reported at each step.
        base: The filter's training settings (architecture, codec, QPs, seed, threads).
        max_loss: Y-PSNR loss budget in dB against the uncompressed filter, on validation.
        timer: Milliseconds per 1920x1080 frame of a model, measured at each step; None: not timed.
        status: Told what is being done, for a progress display.
    """

    train: list[LumaPairs]
    validation: list[LumaPairs]
    test: list[LumaPairs]
    base: TrainConfig
    max_loss: float
    timer: Timer | None = None
    status: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        """Tell ``status``, if there is one, what is being done."""
        if self.status:
            self.status(text)
