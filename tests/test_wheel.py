"""nnslim built as a wheel and installed outside the checkout runs, and finds its data through nnslim.assets.

The wheel is built from a copy of the checkout (so that no stale ``build/`` folder leaks into it) and installed with
``--no-deps`` into a fresh virtual environment in a temporary folder. That environment reuses the checkout's
installed dependencies through a ``.pth`` file naming ``.venv``'s site-packages, which adds that folder to
``sys.path`` without running its ``.pth`` files: the editable install's hook (and ``src/``) stay out, so ``nnslim``
can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from nnslim.assets import DEFAULT_FILTER

ROOT = Path(__file__).resolve().parents[1]
# Not part of a build: version control, environments, outputs and local data at the top; caches anywhere.
_TOP_LEVEL_SKIPS = {".git", ".venv", "build", "dist", "data", "out"}
_SKIPS = shutil.ignore_patterns("*.egg-info", "__pycache__", ".*_cache", "*.ckpt.*")


def _not_sources(folder: str, names: list[str]) -> set[str]:
    skipped = set(_SKIPS(folder, names))
    return skipped | (_TOP_LEVEL_SKIPS & set(names)) if Path(folder) == ROOT else skipped


pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put the checkout's sources on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: Sequence[str | Path], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command; fail the test with its output if it fails."""
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


class Installed:
    """A virtual environment outside the checkout with nnslim installed from a wheel."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / ("Scripts" if os.name == "nt" else "bin")
        self.python = self.bin / ("python.exe" if os.name == "nt" else "python")
        self.nnslim = self.bin / ("nnslim.exe" if os.name == "nt" else "nnslim")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built with the checkout's setuptools from a copy of its sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=_not_sources, symlinks=True)
    out = tmp / "dist"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out]
    pip.append(source)
    _run(pip, cwd=tmp)
    (built,) = out.glob("nnslim-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh environment outside the checkout, the checkout's dependencies reused, nnslim from the wheel."""
    venv = Installed(tmp_path_factory.mktemp("venv") / "env")
    assert ROOT not in venv.root.parents
    _run([sys.executable, "-m", "venv", "--without-pip", venv.root], cwd=venv.root.parent)
    site = _run([venv.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv.root)
    deps = Path(sysconfig.get_paths()["purelib"])  # the checkout's .venv, where pytest runs
    (Path(site.stdout.strip()) / "_nnslim_deps.pth").write_text(f"{deps}\n")
    # pip comes from the reused site-packages and installs into the running interpreter's environment: the new one.
    _run([venv.python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], cwd=venv.root)
    return venv


def test_the_wheel_carries_the_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    stem = DEFAULT_FILTER.removesuffix(".pt")
    wanted = {f"nnslim/shipped/{stem}{ext}" for ext in (".pt", ".json", ".bbc.nnsl")}
    wanted |= {"nnslim/tables/lowrank_table.json", "nnslim/assets.py", "nnslim/__main__.py"}
    assert wanted <= names, f"missing from {wheel.name}: {sorted(wanted - names)}"
    assert not [n for n in names if "__pycache__" in n or ".ckpt." in n]
    assert wheel.stat().st_size < 12_000_000, f"{wheel.name} is {wheel.stat().st_size / 1e6:.1f} MB"


def test_the_installed_wheel_runs_from_outside_the_checkout(installed: Installed, tmp_path: Path) -> None:
    probe = (
        "import json, nnslim; from nnslim import assets; "
        "print(json.dumps([nnslim.__file__, str(assets.shipped(assets.DEFAULT_FILTER)), str(assets.lowrank_table())]))"
    )
    done = _run([installed.python, "-c", probe], cwd=tmp_path)
    module, model, table = (Path(p) for p in json.loads(done.stdout))
    for path in (module, model, table):
        assert installed.root in path.parents, f"{path} is not from the wheel installed in {installed.root}"
        assert path.is_file()
    assert model.name == DEFAULT_FILTER
    version = _run([installed.nnslim, "--version"], cwd=tmp_path)
    assert "nnslim" in version.stdout + version.stderr


def test_the_quick_demo_runs_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    """The demo with its default filter (the packaged one), from a folder that is not the checkout."""
    sequences = ROOT / "data" / "sequences"
    if not (sequences / "sequences.json").is_file():
        sequences = tmp_path / "sequences"
        _run([installed.nnslim, "sequences", "--out", sequences], cwd=tmp_path, timeout=1200)
    out = tmp_path / "O"
    report = tmp_path / "O.json"
    demo: list[str | Path] = [installed.nnslim, "demo", "--quick", "--sequences", sequences, "--out", out]
    demo += ["--json", report]
    _run(demo, cwd=tmp_path, timeout=3600)
    assert report.is_file()
    assert (out / "report" / "index.html").is_file()
