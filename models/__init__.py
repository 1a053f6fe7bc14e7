"""Package data: ``nnslim.shipped`` in an installed nnslim (see pyproject.toml and nnslim.assets)."""
