"""What every job shares: the progress callback, the encode cache, the results store and versions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from nnslim import __version__
from nnslim.errors import NnslimError
from nnslim.io import require_writable_dir
from nnslim.store import ResultsStore
from nnslim.video import content
from nnslim.video.codecs import encoder_version, ffmpeg_version, get_codec

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class Progress:
    """How a job reports while it runs.

    Attributes:
        status: What it is doing now (a spinner's text).
        note: A line worth keeping (a finished step, a decision).
    """

    status: Say = _quiet
    note: Say = _quiet


QUIET = Progress()


def encode_cache(cache: Path | None) -> Path:
    """The encode cache: ``cache``, or the default one; created if missing."""
    return require_writable_dir(cache or content.cache_dir() / "encodes", create=True)


def check_qps(codec: str, qps: tuple[int, ...]) -> tuple[int, ...]:
    """``qps``, each checked against the codec's range.

    Raises:
        NnslimError: An unknown codec, no QPs, or a QP out of range.
    """
    if not qps:
        raise NnslimError("give at least one QP")
    spec = get_codec(codec)
    for qp in qps:
        spec.quantizer(qp)
    return qps


def filter_path(path: Path) -> Path:
    """A filter file, or the ``slim.pt`` of a compress output folder."""
    return path / "slim.pt" if path.is_dir() else path


def versions(codecs: list[str]) -> dict[str, str]:
    """nnslim's, FFmpeg's and the encoders' versions, and those of the libraries that run and code filters."""
    found = {"nnslim": __version__, "ffmpeg": ffmpeg_version(), **{c: encoder_version(c) for c in codecs}}
    for package in ("torch", "onnxruntime", "nncodec"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def record(store: Path | None, kind: str, params: dict[str, Any], results: dict[str, Any], codecs: list[str]) -> int:
    """Add a run to the results store (the default one when ``store`` is None); returns its id."""
    return ResultsStore(store).record(kind, params, results, versions(codecs))


@dataclass(frozen=True)
class Recorded:
    """A job's document as the results store keeps it, and the run's id there."""

    run_id: int
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.document}
