"""The `.nnsl` container: the syntax only, with no knowledge of how tensors are coded.

Layout (integers little-endian)::

    magic      8 bytes   b"\\x8bNNSL\\r\\n\\x1a"   (a binary first byte, and bytes that text-mode
                                                 transfers change, as in PNG)
    version    u16       FORMAT_VERSION
    reserved   u16       0
    header     u32       byte length H of the compressed header
               H bytes   zlib-compressed UTF-8 JSON: the model description, the chunk table and
                         the tensor table
    header CRC u32       CRC-32 of the H header bytes
    chunks               the coded payloads, back to back, in chunk-table order
    file CRC   u32       CRC-32 of every byte before it

The chunk table gives each chunk's offset (from the first chunk byte), length and CRC-32.
The tensor table gives each tensor's name, shape, dtype, coder, the chunk that holds it and the
coder's parameters. Several tensors may share a chunk (one NNR bitstream codes many tensors).
Nothing in a file is executed: the header is JSON, the payloads are bytes for the coders.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from nnslim.errors import NnslimError

MAGIC = b"\x8bNNSL\r\n\x1a"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16", "int64", "int32")
MAX_HEADER_BYTES = 1 << 24
MAX_ELEMENTS = 1 << 31
_PREAMBLE = struct.Struct("<8sHHI")
_CRC = struct.Struct("<I")


class BitstreamError(NnslimError):
    """A `.nnsl` file that is truncated, corrupt, of another format or version, or inconsistent."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the model as the file stores it.

    Attributes:
        name: State-dict key.
        shape: Tensor shape.
        dtype: Element type of the decoded tensor, one of ``DTYPES``.
        coder: Name of the coder of its payload.
        chunk: Index of the chunk holding it.
        params: The coder's parameters for this tensor (JSON values).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    coder: str
    chunk: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Container:
    """A parsed file: the model description, the tensor table and the chunk payloads."""

    model: dict[str, Any]
    tensors: tuple[TensorEntry, ...]
    chunks: tuple[bytes, ...]


def _header_json(container: Container) -> bytes:
    offsets, position = [], 0
    for chunk in container.chunks:
        offsets.append({"offset": position, "length": len(chunk), "crc32": zlib.crc32(chunk)})
        position += len(chunk)
    header = {
        "model": container.model,
        "chunks": offsets,
        "tensors": [
            {
                "name": t.name,
                "shape": list(t.shape),
                "dtype": t.dtype,
                "coder": t.coder,
                "chunk": t.chunk,
                "params": t.params,
            }
            for t in container.tensors
        ],
    }
    return json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def write(container: Container) -> bytes:
    """Serialize a container; the same container always gives the same bytes.

    Raises:
        BitstreamError: A tensor entry that the reader would refuse (bad dtype, shape or chunk).
    """
    for entry in container.tensors:
        _check_entry(entry, len(container.chunks))
    header = zlib.compress(_header_json(container), 9)
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header))
    body = b"".join((preamble, header, _CRC.pack(zlib.crc32(header)), *container.chunks))
    return body + _CRC.pack(zlib.crc32(body))


def _check_entry(entry: TensorEntry, chunks: int) -> None:
    where = f"tensor {entry.name!r}"
    if entry.dtype not in DTYPES:
        raise BitstreamError(f"{where}: dtype {entry.dtype!r} is not one of {', '.join(DTYPES)}")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in entry.shape) or len(entry.shape) > 8:
        raise BitstreamError(f"{where}: bad shape {list(entry.shape)}")
    if entry.elements > MAX_ELEMENTS:
        raise BitstreamError(f"{where}: {entry.elements} elements is more than a filter holds")
    if not 0 <= entry.chunk < chunks:
        raise BitstreamError(f"{where}: chunk {entry.chunk} does not exist ({chunks} chunks)")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_HEADER_BYTES)
    except zlib.error as exc:
        raise BitstreamError(f"corrupt header ({exc})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise BitstreamError("corrupt header (too long or incomplete)")
    return text


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BitstreamError(f"{where}: missing or malformed {key!r}")
    return value


def _parse_header(text: bytes, payload: int) -> tuple[dict[str, Any], list[dict[str, int]], list[TensorEntry]]:
    try:
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BitstreamError(f"header is not JSON ({exc})") from None
    model = _field(header, "model", dict, "header")
    chunks = []
    end = 0
    for i, raw in enumerate(_field(header, "chunks", list, "header")):
        where = f"chunk {i}"
        chunk = {key: _field(raw, key, int, where) for key in ("offset", "length", "crc32")}
        if chunk["offset"] != end or chunk["length"] < 0:
            raise BitstreamError(f"{where}: chunks are not back to back")
        end += chunk["length"]
        chunks.append(chunk)
    if end != payload:
        raise BitstreamError(f"the chunks hold {end} bytes but the file has {payload} (truncated or padded)")
    tensors = []
    for i, raw in enumerate(_field(header, "tensors", list, "header")):
        where = f"tensor {i}"
        entry = TensorEntry(
            name=_field(raw, "name", str, where),
            shape=tuple(_field(raw, "shape", list, where)),
            dtype=_field(raw, "dtype", str, where),
            coder=_field(raw, "coder", str, where),
            chunk=_field(raw, "chunk", int, where),
            params=_field(raw, "params", dict, where),
        )
        _check_entry(entry, len(chunks))
        tensors.append(entry)
    if len({t.name for t in tensors}) != len(tensors):
        raise BitstreamError("the tensor table names a tensor twice")
    return model, chunks, tensors


def read(data: bytes) -> Container:
    """Parse and check a `.nnsl` file.

    Checks, in order: magic, version, header CRC, header syntax, each chunk's CRC (naming the
    tensors it holds), then the CRC of the whole file.

    Raises:
        BitstreamError: The first check that fails, in one line.
    """
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not an .nnsl file (wrong magic number)")
    if len(data) < _PREAMBLE.size + 2 * _CRC.size:
        raise BitstreamError(f"truncated: {len(data)} bytes is shorter than any .nnsl file")
    _, version, _, header_length = _PREAMBLE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"format version {version}; this nnslim reads version {FORMAT_VERSION}")
    header_end = _PREAMBLE.size + header_length
    if header_end + 2 * _CRC.size > len(data):
        raise BitstreamError(f"truncated: the header claims {header_length} bytes, the file has {len(data)} in all")
    header = data[_PREAMBLE.size : header_end]
    (header_crc,) = _CRC.unpack_from(data, header_end)
    if zlib.crc32(header) != header_crc:
        raise BitstreamError("header CRC mismatch (corrupt file)")
    start, stop = header_end + _CRC.size, len(data) - _CRC.size
    model, table, tensors = _parse_header(_inflate(header), stop - start)
    chunks = []
    for i, chunk in enumerate(table):
        payload = data[start + chunk["offset"] : start + chunk["offset"] + chunk["length"]]
        if zlib.crc32(payload) != chunk["crc32"]:
            names = ", ".join(t.name for t in tensors if t.chunk == i) or "no tensor"
            raise BitstreamError(f"chunk {i} ({names}) fails its CRC (corrupt file)")
        chunks.append(payload)
    (file_crc,) = _CRC.unpack_from(data, stop)
    if zlib.crc32(data[:stop]) != file_crc:
        raise BitstreamError("file CRC mismatch (corrupt file)")
    return Container(model, tuple(tensors), tuple(chunks))
