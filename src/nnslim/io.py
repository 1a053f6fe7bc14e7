"""Atomic file writes and checks on output locations."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from nnslim.errors import NnslimError


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A file to write whose contents replace ``path`` only when the block ends without an error.

    Readers see the old file or the whole new one; on an error the new one is removed. The file
    gets the permissions the umask gives a new file.

    Args:
        path: Destination file; its directory must exist.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with ``atomic_writer``."""
    with atomic_writer(path) as f:
        f.write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_safe(obj: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (NaN becomes null), atomically."""
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n").encode())


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_writable_dir(path: Path, create: bool = False) -> Path:
    """Check that ``path`` is a directory we can write into.

    Args:
        path: The directory.
        create: Create it (and its parents) when missing instead of failing.

    Returns:
        The path.

    Raises:
        NnslimError: The directory is missing (and not created), not a directory,
            or not writable.
    """
    if create and not path.exists():
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise NnslimError(f"cannot create output directory {path}: {exc.strerror}") from None
    if not path.exists():
        raise NnslimError(f"output directory {path} does not exist")
    if not path.is_dir():
        raise NnslimError(f"output path {path} is not a directory")
    if not os.access(path, os.W_OK):
        raise NnslimError(f"output directory {path} is not writable")
    return path


def require_writable_file(path: Path, create: bool = False) -> Path:
    """Check that a file can be written at ``path``: its folder exists (or, with ``create``, is made), writable."""
    require_writable_dir(path.parent if str(path.parent) else Path("."), create)
    if path.is_dir():
        raise NnslimError(f"output file {path} is a directory")
    return path
