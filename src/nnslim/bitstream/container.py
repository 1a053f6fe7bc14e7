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
Every size a file declares is checked against ``Limits`` before the work it would cost.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from nnslim.errors import NnslimError

MAGIC = b"\x8bNNSL\r\n\x1a"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16", "int64", "int32")
DEFAULT_MAX_PARAMS = 64 * 2**20
"""Parameters of the largest filter nnslim reads from a file unless told otherwise (``--max-params``)."""
_PREAMBLE = struct.Struct("<8sHHI")
_CRC = struct.Struct("<I")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class BitstreamError(NnslimError):
    """A `.nnsl` file that is truncated, corrupt, of another format or version, inconsistent, or over a limit."""


@dataclass(frozen=True)
class Limits:
    """What nnslim accepts from a file; each limit is checked before the work it bounds.

    The shipped filters have at most 620k parameters and about 100 tensors: the defaults leave
    room for filters a hundred times larger while a hostile file costs at most seconds and a few
    hundred megabytes.

    Attributes:
        max_params: Parameters of the architecture to build, of its layer table and of the tensor table.
        max_file_bytes: Bytes of a whole file.
        max_header_bytes: Bytes of the compressed header.
        max_json_bytes: Bytes of the header once inflated.
        max_depth: Nesting depth of the header's JSON.
        max_tensors: Entries of the tensor table.
        max_chunks: Entries of the chunk table.
        max_layers: Layers with parameters that an architecture builds, and entries of its layer table.
        max_channels: Channels or features of one layer.
        max_kernel: Kernel size, stride, padding and dilation of one convolution.
        max_dims: Dimensions of one tensor.
        max_name_chars: Characters of one tensor or layer name.
        max_kwargs: Arguments of the architecture.
        max_kwargs_bytes: Bytes of the architecture's arguments as JSON.
    """

    max_params: int = DEFAULT_MAX_PARAMS
    max_file_bytes: int = 1 << 30
    max_header_bytes: int = 4 << 20
    max_json_bytes: int = 4 << 20
    max_depth: int = 32
    max_tensors: int = 8192
    max_chunks: int = 8192
    max_layers: int = 1024
    max_channels: int = 4096
    max_kernel: int = 31
    max_dims: int = 8
    max_name_chars: int = 512
    max_kwargs: int = 32
    max_kwargs_bytes: int = 64 << 10

    @staticmethod
    def for_params(max_params: int) -> Limits:
        """The default limits with another parameter limit, and room in the file for that many parameters.

        Raises:
            NnslimError: A limit that is not a positive integer.
        """
        if isinstance(max_params, bool) or not isinstance(max_params, int) or max_params < 1:
            raise NnslimError(f"the parameter limit must be a positive integer, not {max_params!r}")
        return Limits(max_params=max_params, max_file_bytes=max(Limits.max_file_bytes, 16 * max_params))


DEFAULT_LIMITS = Limits()


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
        _check_entry(entry, len(container.chunks), DEFAULT_LIMITS)
    header = zlib.compress(_header_json(container), 9)
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header))
    body = b"".join((preamble, header, _CRC.pack(zlib.crc32(header)), *container.chunks))
    return body + _CRC.pack(zlib.crc32(body))


def shorten(text: str, chars: int = 40) -> str:
    """Text from a file as a one-line message shows it: escaped unless printable, cut to about ``chars`` characters."""
    cut = text if len(text) <= chars else text[:chars] + f"... ({len(text)} characters)"
    return cut if cut.isprintable() and cut else repr(cut)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_entry(entry: TensorEntry, chunks: int, limits: Limits) -> None:
    if len(entry.name) > limits.max_name_chars:
        raise BitstreamError(f"tensor {shorten(entry.name)}: name longer than the limit of {limits.max_name_chars}")
    where = f"tensor {entry.name!r}"
    if entry.dtype not in DTYPES:
        raise BitstreamError(f"{where}: dtype {shorten(str(entry.dtype))} is not one of {', '.join(DTYPES)}")
    if len(entry.shape) > limits.max_dims:
        raise BitstreamError(f"{where}: shape of {len(entry.shape)} dimensions; the limit is {limits.max_dims}")
    if not all(_is_int(d) and d >= 0 for d in entry.shape):
        raise BitstreamError(f"{where}: bad shape {shorten(str(list(entry.shape)), 80)}")
    if any(d > limits.max_params for d in entry.shape) or entry.elements > limits.max_params:
        raise BitstreamError(
            f"{where}: shape {shorten(str(list(entry.shape)), 80)} is more than a filter holds "
            f"(the limit is {limits.max_params} parameters; see --max-params)"
        )
    if not 0 <= entry.chunk < chunks:
        raise BitstreamError(f"{where}: chunk {entry.chunk} does not exist ({chunks} chunks)")


def _inflate(data: bytes, limits: Limits) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, limits.max_json_bytes)
    except zlib.error as exc:
        raise BitstreamError(f"corrupt header ({exc})") from None
    if inflater.unconsumed_tail:
        raise BitstreamError(f"header: inflates to more than the limit of {limits.max_json_bytes} bytes")
    if not inflater.eof:
        raise BitstreamError("corrupt header (incomplete)")
    return text


def json_depth(text: bytes, limit: int) -> int:
    """Nesting depth of JSON text, counted up to ``limit + 1`` without parsing (brackets in strings ignored)."""
    depth = deepest = 0
    for bracket in _STRING.sub(b'""', text).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BitstreamError(f"{where}: missing or malformed {key!r}")
    return value


def _table(header: dict[str, Any], key: str, limit: int) -> list[Any]:
    rows = _field(header, key, list, "header")
    if len(rows) > limit:
        raise BitstreamError(f"header: {len(rows)} {key}; the limit is {limit}")
    return rows


def _parse_header(
    text: bytes, payload: int, limits: Limits
) -> tuple[dict[str, Any], list[dict[str, int]], list[TensorEntry]]:
    if json_depth(text, limits.max_depth) > limits.max_depth:
        raise BitstreamError(f"header: JSON nested deeper than the limit of {limits.max_depth}")
    try:
        header = json.loads(text, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BitstreamError(f"header is not JSON ({exc})") from None
    model = _field(header, "model", dict, "header")
    chunks = []
    end = 0
    for i, raw in enumerate(_table(header, "chunks", limits.max_chunks)):
        where = f"chunk {i}"
        chunk = {key: _field(raw, key, int, where) for key in ("offset", "length", "crc32")}
        if chunk["offset"] != end or chunk["length"] < 0:
            raise BitstreamError(f"{where}: chunks are not back to back")
        end += chunk["length"]
        chunks.append(chunk)
    if end != payload:
        raise BitstreamError(f"the chunks hold {end} bytes but the file has {payload} (truncated or padded)")
    tensors = []
    total = 0
    for i, raw in enumerate(_table(header, "tensors", limits.max_tensors)):
        where = f"tensor {i}"
        entry = TensorEntry(
            name=_field(raw, "name", str, where),
            shape=tuple(_field(raw, "shape", list, where)),
            dtype=_field(raw, "dtype", str, where),
            coder=_field(raw, "coder", str, where),
            chunk=_field(raw, "chunk", int, where),
            params=_field(raw, "params", dict, where),
        )
        _check_entry(entry, len(chunks), limits)
        total += entry.elements
        if total > limits.max_params:
            raise BitstreamError(
                f"tensor table: more than the limit of {limits.max_params} parameters in all (see --max-params)"
            )
        tensors.append(entry)
    if len({t.name for t in tensors}) != len(tensors):
        raise BitstreamError("the tensor table names a tensor twice")
    return model, chunks, tensors


def read(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Container:
    """Parse and check a `.nnsl` file.

    Checks, in order: size, magic, version, header size and CRC, header syntax and limits, each
    chunk's CRC (naming the tensors it holds), then the CRC of the whole file.

    Args:
        data: The file's bytes.
        limits: What the file may declare.

    Raises:
        BitstreamError: The first check that fails, in one line.
    """
    if len(data) > limits.max_file_bytes:
        raise BitstreamError(f"{len(data)} bytes is more than the limit of {limits.max_file_bytes} for a file")
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
    if header_length > limits.max_header_bytes:
        raise BitstreamError(f"header: {header_length} bytes is more than the limit of {limits.max_header_bytes}")
    header = data[_PREAMBLE.size : header_end]
    (header_crc,) = _CRC.unpack_from(data, header_end)
    if zlib.crc32(header) != header_crc:
        raise BitstreamError("header CRC mismatch (corrupt file)")
    start, stop = header_end + _CRC.size, len(data) - _CRC.size
    model, table, tensors = _parse_header(_inflate(header, limits), stop - start, limits)
    chunks = []
    for i, chunk in enumerate(table):
        payload = data[start + chunk["offset"] : start + chunk["offset"] + chunk["length"]]
        if zlib.crc32(payload) != chunk["crc32"]:
            names = ", ".join(t.name for t in tensors if t.chunk == i) or "no tensor"
            raise BitstreamError(f"chunk {i} ({shorten(names, 80)}) fails its CRC (corrupt file)")
        chunks.append(payload)
    (file_crc,) = _CRC.unpack_from(data, stop)
    if zlib.crc32(data[:stop]) != file_crc:
        raise BitstreamError("file CRC mismatch (corrupt file)")
    return Container(model, tuple(tensors), tuple(chunks))
