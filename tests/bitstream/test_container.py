import struct
import zlib

import pytest

from nnslim.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    BitstreamError,
    Container,
    TensorEntry,
    read,
    write,
)

CONTAINER = Container(
    model={"arch": {"name": "postfilter", "kwargs": {}}},
    tensors=(
        TensorEntry("a.weight", (2, 3), "float32", "raw", 0, {"stored": "float32"}),
        TensorEntry("a.bias", (2,), "float32", "nnr", 1, {"qp": -32}),
        TensorEntry("b.weight", (4,), "float32", "nnr", 1, {"qp": -32}),
    ),
    chunks=(bytes(range(24)), b"nnr payload"),
)


def test_round_trip_is_exact_and_deterministic() -> None:
    data = write(CONTAINER)
    assert data.startswith(MAGIC) and data == write(CONTAINER)
    assert read(data) == CONTAINER


def test_truncations_are_refused_clearly() -> None:
    data = write(CONTAINER)
    for length in range(len(data)):
        with pytest.raises(BitstreamError):
            read(data[:length])


def test_wrong_magic_version_and_crcs() -> None:
    data = write(CONTAINER)
    with pytest.raises(BitstreamError, match="magic"):
        read(b"PK\x03\x04" + data[4:])
    other = data[:8] + struct.pack("<H", FORMAT_VERSION + 1) + data[10:]
    with pytest.raises(BitstreamError, match=f"version {FORMAT_VERSION + 1}"):
        read(other)
    flipped = bytearray(data)
    flipped[-8] ^= 0x01  # inside the last chunk
    with pytest.raises(BitstreamError, match=r"chunk 1 \(a\.bias, b\.weight\) fails its CRC"):
        read(bytes(flipped))
    flipped = bytearray(data)
    flipped[-1] ^= 0x80  # the file CRC itself
    with pytest.raises(BitstreamError, match="file CRC"):
        read(bytes(flipped))
    with pytest.raises(BitstreamError):
        read(data + b"\x00")


def _rewrite_header(data: bytes, edit: object) -> bytes:
    """The file with its header JSON changed by ``edit`` and every CRC made right again."""
    (length,) = struct.unpack_from("<I", data, 12)
    header = zlib.decompress(data[16 : 16 + length])
    new = zlib.compress(edit(header))  # type: ignore[operator]
    body = data[:12] + struct.pack("<I", len(new)) + new + struct.pack("<I", zlib.crc32(new))
    body += data[16 + length + 4 : -4]
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'"dtype":"float32"', b'"dtype":"object"', "dtype"),
        (b'"shape":[2,3]', b'"shape":[-2,3]', "bad shape"),
        (b'"shape":[2,3]', b'"shape":[65536,65536]', "more than a filter holds"),
        (b'"chunk":0', b'"chunk":7', "chunk 7 does not exist"),
        (b'"length":24', b'"length":23', "back to back|hold"),
        (b'"name":"b.weight"', b'"name":"a.bias"', "twice"),
        (b'"model":{', b'"model":[{', "not JSON|malformed"),
    ],
)
def test_inconsistent_headers_are_refused_by_name(old: bytes, new: bytes, message: str) -> None:
    data = _rewrite_header(write(CONTAINER), lambda h: h.replace(old, new, 1))
    with pytest.raises(BitstreamError, match=message):
        read(data)


def test_writer_refuses_what_the_reader_would() -> None:
    bad = Container({}, (TensorEntry("x", (1,), "float32", "raw", 3),), (b"",))
    with pytest.raises(BitstreamError, match="chunk 3"):
        write(bad)
