"""The package's shape: imports go down the layers only, no import cycles, no function with too many parameters.

Every module under ``src/nnslim`` is read with ``ast`` (nothing is imported), and every import counts: at module
level, inside functions, under ``if TYPE_CHECKING:``. The layers, bottom to top, are ``LAYERS`` below; a module may
import its own layer and the ones beneath it.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "nnslim"

# Bottom to top. A key is a top-level module or subpackage of nnslim ("__init__" is nnslim/__init__.py itself).
LAYERS: list[set[str]] = [
    {"errors", "io", "store", "assets", "__init__"},
    {"video"},
    {"models"},
    {"compress"},
    {"bitstream"},
    {"adapt"},
    {"evaluate"},
    {"deploy"},
    {"jobs", "sweep"},
    {"cli", "__main__"},
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MAX_PARAMETERS = 8


@dataclass(frozen=True)
class Import:
    """One import of an nnslim module, where it is written and what it names."""

    source: str  # the importing module, e.g. "nnslim.compress.schedule"
    path: Path
    line: int
    text: str  # the statement as written (normalised by ast.unparse)
    target: str  # the imported nnslim module, e.g. "nnslim.evaluate.runtime"

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: `{self.text}`"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Every module of nnslim by dotted name."""
    files = (p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    return {_module_name(p): p for p in sorted(files)}


MODULES = _sources()


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(names: list[str]) -> str:
    """The most specific existing module among candidate dotted names (most specific first), else the first."""
    return next((n for n in names if n in MODULES), names[0])


def _imports(module: str, path: Path) -> Iterator[Import]:
    """The nnslim imports written in one module, absolute and relative."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if _is_package(path) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "nnslim" or alias.name.startswith("nnslim."):
                    yield Import(module, path, node.lineno, ast.unparse(node), _resolve([alias.name]))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            if stem != "nnslim" and not stem.startswith("nnslim."):
                continue
            # `from nnslim.x import y` names the module nnslim.x.y when there is one, else something in nnslim.x.
            targets = dict.fromkeys(_resolve([f"{stem}.{alias.name}", stem]) for alias in node.names)
            for target in targets:
                yield Import(module, path, node.lineno, ast.unparse(node), target)


ALL_IMPORTS = [imp for module, path in MODULES.items() for imp in _imports(module, path)]


def _layer_key(module: str) -> str:
    """``nnslim.compress.schedule`` -> ``compress``; ``nnslim`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_the_modules_are_found() -> None:
    assert "nnslim.errors" in MODULES
    assert "nnslim.compress.schedule" in MODULES
    assert any(i.source == "nnslim.compress.schedule" for i in ALL_IMPORTS)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(f"{m} ({p.relative_to(ROOT)})" for m, p in MODULES.items() if _layer_key(m) not in LAYER)
    assert unplaced == [], "give these a place in LAYERS (tests/test_layers.py): " + ", ".join(unplaced)


def test_no_import_goes_up_the_layers() -> None:
    upward = []
    for imp in ALL_IMPORTS:
        low, high = _layer_key(imp.source), _layer_key(imp.target)
        if low in LAYER and high in LAYER and LAYER[high] > LAYER[low]:
            upward.append(f"{imp.where()}: {low} (layer {LAYER[low]}) imports {high} (layer {LAYER[high]})")
    assert upward == [], "imports up the layers:\n" + "\n".join(upward)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component that has one (Tarjan), each as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)

    found = []
    for component in components:
        start = min(component)
        # Breadth-first from start back to start, inside the component: the shortest cycle through start.
        parents: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parents:
            following = []
            for node in frontier:
                for nxt in sorted(edges.get(node, set()) & component):
                    if nxt not in parents:
                        parents[nxt] = node
                        following.append(nxt)
            frontier = following
        path = [start]
        node = parents[start]
        while node != start:
            path.append(node)
            node = parents[node]
        found.append([start, *reversed(path[1:]), start])
    return found


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for imp in ALL_IMPORTS:
        if imp.target in MODULES:
            edges.setdefault(imp.source, set()).add(imp.target)
            where.setdefault((imp.source, imp.target), imp)
    described = []
    for cycle in _cycles(edges):
        steps = [where[(a, b)].where() for a, b in itertools.pairwise(cycle)]
        described.append(" -> ".join(cycle) + "\n    " + "\n    ".join(steps))
    assert described == [], "import cycles:\n" + "\n".join(described)


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"a"}}) == [["a", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Parameters a caller can pass: self/cls not counted, *args and **kwargs one each."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    if positional and positional[0].arg in ("self", "cls", "mcs"):
        positional = positional[1:]
    return len(positional) + len(args.kwonlyargs) + (args.vararg is not None) + (args.kwarg is not None)


@pytest.mark.parametrize(
    ("source", "count"),
    [
        ("def f(a, b=1, *args, c, d=2, **kw): pass", 6),
        ("def f(self, a, /, b): pass", 2),
        ("async def f(cls, *, a): pass", 1),
    ],
)
def test_parameters_are_counted_as_documented(source: str, count: int) -> None:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    assert _parameters(node) == count


def test_no_function_takes_more_than_eight_parameters() -> None:
    offenders = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _parameters(node) > MAX_PARAMETERS:
                offenders.append(
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({_parameters(node)} parameters)"
                )
    assert offenders == [], f"more than {MAX_PARAMETERS} parameters (bundle them):\n" + "\n".join(offenders)
