"""Compression: pruning, low-rank kernels and quantization that really shrink a filter."""
