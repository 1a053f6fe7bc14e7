"""nnslim.assets finds the shipped files through importlib.resources, and pyproject.toml ships what it should."""

from __future__ import annotations

import ast
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from nnslim import assets
from nnslim.errors import NnslimError

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_default_filter_is_the_checkouts_file() -> None:
    path = assets.shipped(assets.DEFAULT_FILTER)
    assert path.name == assets.DEFAULT_FILTER
    # In a checkout (editable install) the package data are the repository's own files, not copies.
    assert path.resolve() == (ROOT / "models" / assets.DEFAULT_FILTER).resolve()


@pytest.mark.parametrize("suffix", [".json", ".bbc.nnsl"])
def test_the_default_filter_has_its_companions(suffix: str) -> None:
    name = assets.DEFAULT_FILTER.removesuffix(".pt") + suffix
    assert assets.shipped(name).is_file()


def test_the_lowrank_table_is_the_published_one() -> None:
    path = assets.lowrank_table()
    assert path.resolve() == (ROOT / "benchmarks" / "results" / "lowrank_table.json").resolve()
    assert json.loads(path.read_text())


@pytest.mark.parametrize("name", ["no_such_filter.pt", "../README.md", "models/postfilter_x265_qp37.pt", ""])
def test_an_unknown_or_pathlike_name_is_refused_by_name(name: str) -> None:
    with pytest.raises(NnslimError) as err:
        assets.shipped(name)
    assert repr(name) in str(err.value)


def test_pyproject_ships_the_default_filter_the_slim_files_and_their_originals() -> None:
    config = _pyproject()["tool"]["setuptools"]
    assert config["package-dir"] == {"": "src", "nnslim.shipped": "models", "nnslim.tables": "benchmarks/results"}
    listed = config["package-data"]["nnslim.shipped"]
    wanted = {assets.DEFAULT_FILTER}
    for slim in (ROOT / "models").glob("*.bbc.nnsl"):
        stem = slim.name.removesuffix(".bbc.nnsl")
        wanted |= {slim.name, f"{stem}.pt", f"{stem}.json"}
    assert wanted <= set(listed), f"not shipped: {sorted(wanted - set(listed))}"
    assert [n for n in listed if not (ROOT / "models" / n).is_file()] == []
    assert config["package-data"]["nnslim.tables"] == ["lowrank_table.json"]
    for name in listed:
        assert assets.shipped(name).is_file()


def test_assets_imports_only_the_standard_library_and_errors() -> None:
    source = Path(assets.__file__)
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        bad += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] not in allowed and n != "nnslim.errors"]
    assert bad == []
