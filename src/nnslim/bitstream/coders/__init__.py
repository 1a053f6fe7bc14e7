"""The coders a `.nnsl` file may name, by name: adding a coder is one module and one line here.

Each module defines a ``CODER`` (``base.Coder``): how it encodes a tensor, checks its table
entries, bounds and decodes its chunks, and estimates its rate.
"""

from __future__ import annotations

from nnslim.bitstream.coders import huffman, nnr, raw
from nnslim.bitstream.coders.base import Alone, Coded, Coder, Joined, Tensor

CODERS: dict[str, Coder] = {coder.name: coder for coder in (raw.CODER, huffman.CODER, nnr.CODER)}
"""Every coder by name, simplest first."""

__all__ = ["CODERS", "Alone", "Coded", "Coder", "Joined", "Tensor"]
