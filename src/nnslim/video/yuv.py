"""Raw YUV 4:2:0 planes, files named the JVET way, and sequence descriptions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnslim.errors import NnslimError
from nnslim.io import atomic_write_bytes

_JVET_NAME = re.compile(r"^(?P<name>.+?)_(?P<w>\d+)x(?P<h>\d+)_(?P<fps>\d+(?:\.\d+)?)fps_(?P<bits>\d+)bit_420$")


@dataclass(frozen=True)
class Yuv420:
    """Frames of a 4:2:0 video as three plane stacks.

    Attributes:
        y: Luma, shape (frames, height, width).
        u: Cb, shape (frames, height // 2, width // 2).
        v: Cr, same shape as ``u``.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        n, h, w = self.y.shape
        if h % 2 or w % 2:
            raise NnslimError(f"4:2:0 needs an even frame size, got {w}x{h}")
        for plane in (self.u, self.v):
            if plane.shape != (n, h // 2, w // 2) or plane.dtype != self.y.dtype:
                raise NnslimError(f"chroma planes {plane.shape} do not match luma {self.y.shape}")

    @property
    def frames(self) -> int:
        return int(self.y.shape[0])

    @property
    def height(self) -> int:
        return int(self.y.shape[1])

    @property
    def width(self) -> int:
        return int(self.y.shape[2])

    @property
    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (self.y, self.u, self.v)

    def to_bytes(self) -> bytes:
        """Return the planar file layout: Y, U, V of frame 0, then of frame 1, ..."""
        itemsize = self.y.dtype.itemsize
        out = bytearray()
        for i in range(self.frames):
            for plane in self.planes:
                out += plane[i].astype(f"<u{itemsize}", copy=False).tobytes()
        return bytes(out)


@dataclass(frozen=True)
class Sequence:
    """A raw 8-bit or 10-bit YUV 4:2:0 file and what it holds.

    Attributes:
        name: Short name, unique in a manifest (``BasketballPass``).
        path: The ``.yuv`` file.
        width: Luma width in pixels.
        height: Luma height in pixels.
        fps: Frame rate.
        frames: Number of frames in the file.
        bitdepth: 8 or 10 (10-bit samples are little-endian 16-bit words).
        split: ``train`` or ``test``, or empty for a user's file outside a manifest.
        source: Where the content comes from.
        sha256: Hash of the file's bytes, or empty when not computed.
    """

    name: str
    path: Path
    width: int
    height: int
    fps: float
    frames: int
    bitdepth: int = 8
    split: str = ""
    source: str = ""
    sha256: str = ""

    @property
    def frame_bytes(self) -> int:
        return frame_bytes(self.width, self.height, self.bitdepth)

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def frame_bytes(width: int, height: int, bitdepth: int = 8) -> int:
    """Bytes in one 4:2:0 frame."""
    return width * height * 3 // 2 * (1 if bitdepth == 8 else 2)


def jvet_name(name: str, width: int, height: int, fps: float, bitdepth: int = 8) -> str:
    """File name the JVET way: ``Name_416x240_30fps_8bit_420.yuv``."""
    return f"{name}_{width}x{height}_{round(fps)}fps_{bitdepth}bit_420.yuv"


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` into (width, height)."""
    match = re.fullmatch(r"(\d+)x(\d+)", text.strip())
    if not match:
        raise NnslimError(f"size must look like 416x240, got {text!r}")
    width, height = int(match[1]), int(match[2])
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise NnslimError(f"4:2:0 needs a positive, even frame size, got {text}")
    return width, height


def describe_yuv(
    path: Path, size: tuple[int, int] | None = None, fps: float | None = None, bitdepth: int | None = None
) -> Sequence:
    """Describe a raw ``.yuv`` file from its JVET name or from explicit values.

    Args:
        path: The file.
        size: (width, height); taken from the name when omitted.
        fps: Frame rate; taken from the name when omitted, else 30.
        bitdepth: 8 or 10; taken from the name when omitted, else 8.

    Raises:
        NnslimError: The size is unknown, or the file is not a whole number of frames.
    """
    if not path.is_file():
        raise NnslimError(f"{path}: no such file")
    match = _JVET_NAME.match(path.stem)
    if size is None:
        if not match:
            raise NnslimError(f"{path.name}: give --size WxH (the name does not say it)")
        size = (int(match["w"]), int(match["h"]))
    if fps is None:
        fps = float(match["fps"]) if match else 30.0
    if bitdepth is None:
        bitdepth = int(match["bits"]) if match else 8
    if bitdepth not in (8, 10):
        raise NnslimError(f"{path.name}: bit depth must be 8 or 10, got {bitdepth}")
    width, height = size
    nbytes = path.stat().st_size
    per_frame = frame_bytes(width, height, bitdepth)
    if nbytes == 0 or nbytes % per_frame:
        raise NnslimError(
            f"{path.name}: {nbytes} bytes is not a whole number of {width}x{height} "
            f"{bitdepth}-bit 4:2:0 frames ({per_frame} bytes each)"
        )
    name = match["name"] if match else path.stem
    return Sequence(name, path, width, height, fps, nbytes // per_frame, bitdepth)


def read_yuv(seq: Sequence, frames: int | None = None, start: int = 0) -> Yuv420:
    """Read frames ``start .. start + frames`` of a sequence.

    Raises:
        NnslimError: The file holds fewer frames than asked for.
    """
    count = seq.frames - start if frames is None else frames
    if start < 0 or count <= 0 or start + count > seq.frames:
        raise NnslimError(f"{seq.path.name}: asked for frames {start}..{start + count - 1}, file has {seq.frames}")
    dtype = np.dtype("u1") if seq.bitdepth == 8 else np.dtype("<u2")
    raw = np.fromfile(
        seq.path, dtype=dtype, count=count * seq.frame_bytes // dtype.itemsize, offset=start * seq.frame_bytes
    )
    return split_planes(raw, seq.width, seq.height)


def split_planes(raw: np.ndarray, width: int, height: int) -> Yuv420:
    """Cut a flat array of whole 4:2:0 frames into plane stacks."""
    luma, chroma = width * height, (width // 2) * (height // 2)
    frames = raw.reshape(-1, luma + 2 * chroma)
    n = frames.shape[0]
    y = frames[:, :luma].reshape(n, height, width)
    u = frames[:, luma : luma + chroma].reshape(n, height // 2, width // 2)
    v = frames[:, luma + chroma :].reshape(n, height // 2, width // 2)
    return Yuv420(y, u, v)


def write_yuv(path: Path, video: Yuv420) -> None:
    """Write planes as a raw ``.yuv`` file (8-bit, or 16-bit little-endian words)."""
    atomic_write_bytes(path, video.to_bytes())


def to_10bit(video: Yuv420) -> Yuv420:
    """Shift 8-bit samples into 10-bit range exactly (x << 2)."""
    return Yuv420(*(p.astype(np.uint16) << 2 for p in video.planes))


def to_8bit(video: Yuv420) -> Yuv420:
    """Round 10-bit samples to 8 bits ((x + 2) >> 2, clipped), the inverse of :func:`to_10bit`."""
    return Yuv420(*(np.minimum((p.astype(np.uint16) + 2) >> 2, 255).astype(np.uint8) for p in video.planes))
