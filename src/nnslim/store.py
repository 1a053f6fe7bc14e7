"""The results store: one SQLite file holding every run's parameters, figures and versions."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nnslim import __version__
from nnslim.errors import NnslimError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    created TEXT NOT NULL,
    params TEXT NOT NULL,
    results TEXT NOT NULL,
    versions TEXT NOT NULL,
    nnslim_version TEXT NOT NULL,
    git_commit TEXT
)
"""


@dataclass(frozen=True)
class Run:
    """One stored run."""

    id: int
    kind: str
    created: str
    params: dict[str, Any]
    results: dict[str, Any]
    versions: dict[str, str]
    nnslim_version: str
    git_commit: str | None


def default_store_path() -> Path:
    """``$NNSLIM_STORE``, else ``$XDG_DATA_HOME/nnslim/results.sqlite`` (``~/.local/share`` by default)."""
    if "NNSLIM_STORE" in os.environ:
        return Path(os.environ["NNSLIM_STORE"])
    data_home = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return data_home / "nnslim" / "results.sqlite"


def git_commit() -> str | None:
    """The commit of the nnslim checkout in use, or None when not run from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


class ResultsStore:
    """Records runs in SQLite; every method opens and closes its own connection."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise NnslimError(f"cannot open results store {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def record(self, kind: str, params: dict[str, Any], results: dict[str, Any], versions: dict[str, str]) -> int:
        """Store one run and return its id."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO runs (kind, created, params, results, versions, nnslim_version, git_commit)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    kind,
                    created,
                    json.dumps(params),
                    json.dumps(results),
                    json.dumps(versions),
                    __version__,
                    git_commit(),
                ),
            )
            return int(cursor.lastrowid or 0)

    def run(self, run_id: int) -> Run:
        """One stored run.

        Raises:
            NnslimError: No run of that id.
        """
        found = [r for r in self.runs() if r.id == run_id]
        if not found:
            raise NnslimError(f"no run {run_id} in {self.path}")
        return found[0]

    def runs(self, kind: str | None = None) -> list[Run]:
        """All stored runs, oldest first, optionally of one kind."""
        query = "SELECT id, kind, created, params, results, versions, nnslim_version, git_commit FROM runs"
        args: tuple[str, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", args).fetchall()
        return [Run(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]), json.loads(r[5]), r[6], r[7]) for r in rows]
