"""Hand-made `.nnsl` files for the hostile-file tests: any header, with every CRC made right."""

import json
import struct
import zlib
from typing import Any

from nnslim.bitstream.container import FORMAT_VERSION, MAGIC, read


def forge(header: dict[str, Any], chunks: list[bytes], nest: int = 0) -> bytes:
    """A file of this header (model and tensor table) and these chunks, the chunk table and every CRC made right.

    With ``nest``, the value ``"deep": 0`` in the header becomes ``nest`` nested lists.
    """
    table, offset = [], 0
    for chunk in chunks:
        table.append({"offset": offset, "length": len(chunk), "crc32": zlib.crc32(chunk)})
        offset += len(chunk)
    text = json.dumps({**header, "chunks": table}).encode()
    text = text.replace(b'"deep": 0', b'"deep": ' + b"[" * nest + b"]" * nest)
    compressed = zlib.compress(text)
    preamble = MAGIC + struct.pack("<HHI", FORMAT_VERSION, 0, len(compressed))
    body = preamble + compressed + struct.pack("<I", zlib.crc32(compressed)) + b"".join(chunks)
    return body + struct.pack("<I", zlib.crc32(body))


def parts(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header (model and tensor table) and chunks of a valid file, to edit and ``forge`` again."""
    container = read(data)
    tensors = [
        {
            "name": t.name,
            "shape": list(t.shape),
            "dtype": t.dtype,
            "coder": t.coder,
            "chunk": t.chunk,
            "params": t.params,
        }
        for t in container.tensors
    ]
    return {"model": container.model, "tensors": tensors}, list(container.chunks)
