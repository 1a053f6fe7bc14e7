"""Package data: ``nnslim.tables`` in an installed nnslim (see pyproject.toml and nnslim.assets)."""
