"""In-process decoding with PyAV into 4:2:0 planes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from nnslim.errors import NnslimError
from nnslim.video.yuv import Yuv420

_PLANAR_420: dict[str, np.dtype] = {
    "yuv420p": np.dtype("u1"),
    "yuvj420p": np.dtype("u1"),
    "yuv420p10le": np.dtype("<u2"),
}


@dataclass(frozen=True)
class Decoded:
    """The result of decoding a file.

    Attributes:
        video: The decoded planes (8-bit or 10-bit samples, as coded).
        payload_bytes: Sum of the coded packet sizes, container overhead excluded.
        seconds: Wall time spent demuxing and decoding.
        fps: Frame rate the container declares, if any.
    """

    video: Yuv420
    payload_bytes: int
    seconds: float
    fps: float | None


def _frame_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    name = frame.format.name
    if name not in _PLANAR_420:
        frame = frame.reformat(format="yuv420p")
        name = "yuv420p"
    dtype = _PLANAR_420[name]
    planes = []
    for plane in frame.planes:
        rows = np.frombuffer(bytes(plane), dtype=dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
        planes.append(rows[:, : plane.width])
    return planes


def decode_file(path: Path, container_format: str | None = None, max_frames: int | None = None) -> Decoded:
    """Decode the first video stream of a file (mp4, y4m, or a raw elementary stream).

    Args:
        path: The file.
        container_format: FFmpeg demuxer name (``h264``, ``hevc``, ``ivf``, ``vvc``); probed when omitted.
        max_frames: Stop after this many frames.

    Raises:
        NnslimError: The file cannot be opened or decoded, or holds no frames.
    """
    ys: list[np.ndarray] = []
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    payload = 0
    start = time.perf_counter()
    try:
        with av.open(str(path), format=container_format) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate) if stream.average_rate else None
            for packet in container.demux(stream):
                payload += packet.size
                for frame in packet.decode():
                    y, u, v = _frame_planes(frame)
                    ys.append(y)
                    us.append(u)
                    vs.append(v)
                if max_frames is not None and len(ys) >= max_frames:
                    break
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise NnslimError(f"{path.name}: cannot decode ({exc})") from None
    seconds = time.perf_counter() - start
    if not ys:
        raise NnslimError(f"{path.name}: no video frames decoded")
    ys, us, vs = ys[:max_frames], us[:max_frames], vs[:max_frames]
    return Decoded(Yuv420(np.stack(ys), np.stack(us), np.stack(vs)), payload, seconds, fps)
