"""The files nnslim ships with it, found the same way in a checkout, an editable install and a wheel.

The shipped models live in the repository's ``models/`` folder and the low-rank table in ``benchmarks/results/``;
pyproject.toml makes them the packages ``nnslim.shipped`` and ``nnslim.tables``, so that ``importlib.resources``
finds them wherever nnslim is installed. Nothing here may import more than the standard library and
``nnslim.errors``: this module is at the bottom of the layers.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nnslim.errors import NnslimError

DEFAULT_FILTER = "postfilter_x265_qp22-37.pt"
"""The post-filter the demo and the report use unless told otherwise."""

_SHIPPED = "nnslim.shipped"
_TABLES = "nnslim.tables"


def _packaged(package: str, name: str, what: str) -> Path:
    """A data file of ``package`` as a real path, or NnslimError naming it."""
    if not name or Path(name).name != name:
        raise NnslimError(f"{what} {name!r}: give a bare file name, e.g. {DEFAULT_FILTER!r}")
    try:
        folder = resources.files(package)
    except ModuleNotFoundError as err:
        raise NnslimError(
            f"{what} {name!r}: this nnslim was installed without its data ({package} is missing)"
        ) from err
    entry = folder / name
    if not entry.is_file():
        raise NnslimError(f"{what} {name!r} is not in this nnslim's data ({folder})")
    # Installed from a directory or a wheel, the data are plain files; a zip import would need as_file().
    return Path(str(entry))


def shipped(name: str) -> Path:
    """The path of a model file shipped with nnslim.

    Args:
        name: A bare file name from the repository's ``models/`` folder that the package carries, e.g.
            ``DEFAULT_FILTER``, ``"postfilter_x265_qp22-37.json"`` or ``"postfilter_x265_qp22-37.bbc.nnsl"``. A
            wheel carries the files pyproject.toml lists; a checkout (editable install) has all of ``models/``.

    Returns:
        The file's path on disk.

    Raises:
        NnslimError: The name is not a bare file name, or this installation does not carry that file.
    """
    return _packaged(_SHIPPED, name, "shipped model file")


def lowrank_table() -> Path:
    """The path of the published low-rank table (``benchmarks/results/lowrank_table.json`` in a checkout).

    Returns:
        The file's path on disk.

    Raises:
        NnslimError: This installation does not carry the table.
    """
    return _packaged(_TABLES, "lowrank_table.json", "low-rank table")
