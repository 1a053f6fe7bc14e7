"""Package list for setuptools; everything else is in pyproject.toml.

``[tool.setuptools.packages.find]`` cannot add packages that live outside ``src/``, so this finds the code under
``src/`` (new subpackages included, with or without an ``__init__.py``) and adds the two data packages that
pyproject.toml maps onto ``models/`` and ``benchmarks/results/``.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages("src", include=["nnslim", "nnslim.*"], exclude=["*.__pycache__"]),
        "nnslim.shipped",
        "nnslim.tables",
    ]
)
