"""How much a filter gains over the codec alone on the held-out test sequences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnslim.jobs.common import QUIET, Progress, check_qps, encode_cache
from nnslim.models.assess import filter_gain
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter
from nnslim.video.yuv import parse_size


@dataclass(frozen=True)
class AssessRequest:
    """Measure a filter's gain.

    Attributes:
        model: Filter file.
        sequences: Folder with ``sequences.json``.
        qps: Ladder QPs (four or more give a BD-rate).
        codec: Codec (the filter's own when None).
        split: Split measured on; sequences that made the filter are refused.
        names: Only these sequences.
        max_size: Skip sequences larger than WxH.
        frames: First frames of each sequence.
        cache: Encode cache.
        trust_factory: The user architecture the filter may name.
    """

    model: Path
    sequences: Path = Path("data/sequences")
    qps: tuple[int, ...] = (37,)
    codec: str | None = None
    split: str = "test"
    names: tuple[str, ...] = ()
    max_size: str | None = None
    frames: int | None = None
    cache: Path | None = None
    trust_factory: str | None = None


@dataclass(frozen=True)
class AssessResult:
    """Per sequence and QP rows, per-sequence and mean gain and BD-rate (``models.assess.summarise``)."""

    model: Path
    codec: str
    qps: tuple[int, ...]
    split: str
    gain: dict[str, Any]

    @property
    def mean_gain_db(self) -> float:
        return float(self.gain["mean"]["gain_db"])

    @property
    def mean_bd_rate(self) -> float:
        return float(self.gain["mean"]["bd_rate"])

    def to_json(self) -> dict[str, Any]:
        return {"model": str(self.model), "codec": self.codec, "qps": list(self.qps), "split": self.split, **self.gain}


def assess(request: AssessRequest, progress: Progress = QUIET) -> AssessResult:
    """Y-PSNR of the codec alone and with the filter, per test sequence and QP.

    Raises:
        NnslimError: Sequences that made the filter, or none selected.
    """
    model, meta = load_filter(request.model, request.trust_factory)
    codec = request.codec or meta.get("training", {}).get("codec", "x265")
    qps = check_qps(codec, request.qps)
    max_size = parse_size(request.max_size) if request.max_size else None
    names = list(request.names) or None
    cache = encode_cache(request.cache)
    splits = splits_for(
        meta, request.sequences, max_size, request.frames, names=names, coding=(codec, qps), cache=cache,
        held_out=request.split,
    )  # fmt: skip
    gain = filter_gain(model, splits.pairs("test", progress.status), progress.status)
    return AssessResult(request.model, codec, qps, request.split, gain)
