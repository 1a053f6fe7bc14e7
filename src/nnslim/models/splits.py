"""A filter's train, validation and test pairs: the one place that knows which sequences each split holds.

``train`` and ``validation`` are the train-split sequences the filter recorded (it was trained
on the first and every choice about it is made on the second); ``test`` is the test split,
measured once and only reported. Each split is encoded (or read from the encode cache) the
first time it is asked for, so a job that needs only the test split encodes nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnslim.errors import NnslimError
from nnslim.models.data import LumaPairs, encode_pairs
from nnslim.models.train import lineage
from nnslim.video.content import cache_dir, load_manifest, select
from nnslim.video.yuv import Sequence

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Splits:
    """The sequences of each split at one codec and QPs, and their pairs once encoded.

    Attributes:
        codec: Codec the pairs are encoded with.
        qps: Ladder QPs.
        sequences: Split name (``train``, ``validation``, ``test``) to its sequences.
        cache: Encode cache.
        frames: First frames of each validation and test sequence (all when None); the
            training pairs always hold every frame.
        folder: Where the sequences were found, for error messages.
        absent: Train-split sequences the filter recorded that the folder lacks; asking for
            the train or validation pairs is then an error.
    """

    codec: str
    qps: tuple[int, ...]
    sequences: dict[str, tuple[Sequence, ...]]
    cache: Path
    frames: int | None = None
    folder: str = "the sequence folder"
    absent: tuple[str, ...] = ()
    _pairs: dict[str, list[LumaPairs]] = field(default_factory=dict, compare=False, repr=False)

    def names(self, split: str) -> list[str]:
        """The names of a split's sequences."""
        return [s.name for s in self._of(split)]

    def pairs(self, split: str, on_step: Callable[[str], None] | None = None) -> list[LumaPairs]:
        """Decoded and original frames of one split, encoded on first use.

        Raises:
            NnslimError: An unknown or empty split.
        """
        if split not in self._pairs:
            frames = None if split == "train" else self.frames
            self._pairs[split] = encode_pairs(list(self._of(split)), self.codec, self.qps, self.cache, frames, on_step)
        return self._pairs[split]

    def _of(self, split: str) -> tuple[Sequence, ...]:
        if split not in SPLITS:
            raise NnslimError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        if split != "test" and self.absent:
            raise NnslimError(f"{self.folder} lacks the filter's training sequences {', '.join(self.absent)}")
        chosen = self.sequences.get(split, ())
        if not chosen:
            raise NnslimError(f"no {split} sequences in {self.folder} match the selection")
        return chosen


def splits_for(
    meta: dict[str, Any],
    sequences: Path,
    max_size: tuple[int, int] | None = None,
    frames: int | None = None,
    *,
    names: list[str] | None = None,
    coding: tuple[str, tuple[int, ...]] | None = None,
    cache: Path | None = None,
    held_out: str = "test",
) -> Splits:
    """The splits of a filter, from its recorded training and a sequence folder.

    Args:
        meta: The filter's description (``load_filter``'s second value); its ``training`` names
            the codec, QPs, and the train and validation sequences.
        sequences: Folder with ``sequences.json``.
        max_size: Largest test frame size.
        frames: First frames of each validation and test sequence.
        names: Only these test sequences.
        coding: Another codec and QPs than the filter's own.
        cache: Encode cache (the default one when None).
        held_out: The manifest split whose sequences make the ``test`` split.

    Raises:
        NnslimError: A filter that records no codec and QPs, or chosen test sequences that made
            the filter (or a filter it was fine-tuned from): measurements are on held-out
            sequences only.
    """
    training = meta.get("training", {})
    if coding is None:
        if "codec" not in training or not training.get("qps"):
            raise NnslimError("the filter records no training codec and QPs")
        coding = (str(training["codec"]), tuple(int(q) for q in training["qps"]))
    manifest = load_manifest(sequences)
    available = {s.name: s for s in select(manifest, "train")}
    recorded = {split: list(training.get(f"{split}_sequences", [])) for split in ("train", "validation")}
    absent = tuple(sorted({n for split in recorded.values() for n in split} - set(available)))
    test = tuple(select(manifest, held_out, names, max_size))
    refuse_training_sequences(meta, test)
    chosen = {split: tuple(available[n] for n in recorded[split] if n in available) for split in recorded}
    return Splits(*coding, chosen | {"test": test}, cache or cache_dir() / "encodes", frames, str(sequences), absent)


def refuse_training_sequences(meta: dict[str, Any], sequences: tuple[Sequence, ...] | list[Sequence]) -> None:
    """Refuse sequences that made the filter: every one trained or validated on by it or by a
    filter it was fine-tuned from (``--init``), followed back.

    Raises:
        NnslimError: Naming the sequences that were used in training.
    """
    used = {
        name
        for run in lineage(meta.get("training", {}))
        for name in (*run.get("train_sequences", []), *run.get("validation_sequences", []))
    }
    overlap = sorted(used & {s.name for s in sequences})
    if overlap:
        raise NnslimError(f"{', '.join(overlap)} were used in training; measure on held-out sequences")
