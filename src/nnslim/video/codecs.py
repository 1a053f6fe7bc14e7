"""Real encoders driven through the static FFmpeg of the imageio-ffmpeg wheel.

Every codec runs at a fixed QP on one ladder: the ``qp`` given to :func:`encode` is an
H.265-style QP, and each spec maps it to its encoder's own quantizer:

===========  ==============  ====================================================
codec        quantizer       mapping from ladder QP
===========  ==============  ====================================================
x264         ``-qp``         q = QP (0..51)
x265         ``qp=``         q = QP (0..51)
vvenc        ``-qp``         q = QP (0..51)
svtav1       ``qp=`` (0-63)  q = 2 QP - 21, so QP 22/27/32/37 -> 23/33/43/53 (QP 11..42)
aom          ``-crf`` (0-63) q = 2 QP - 21, as SVT-AV1
===========  ==============  ====================================================

The AV1 mapping puts the AV1 encoders at about the same Y-PSNR as x265 for each ladder
QP on our sequences (measured on Bikes: x265 QP 22..37 gave 46.5..37.8 dB, SVT-AV1
q 23..53 about the same), so BD-rates are taken over overlapping quality ranges.
All encoders code one intra frame per clip (up to 250 frames) and use ``tune psnr``
where it exists; adaptive quantization is off.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import imageio_ffmpeg

from nnslim.errors import NnslimError
from nnslim.video.decode import decode_file
from nnslim.video.yuv import Sequence, Yuv420, read_yuv, to_8bit, to_10bit, write_yuv


@dataclass(frozen=True)
class CodecSpec:
    """How to run one encoder at a fixed QP.

    Attributes:
        name: Short name used on the command line.
        standard: The coding standard it implements.
        encoder: FFmpeg encoder name.
        muxer: FFmpeg raw-stream muxer (and demuxer) name.
        extension: Bitstream file extension.
        args: Encoder arguments; ``{q}`` becomes the quantizer, ``{preset}`` the preset.
        preset: Speed preset.
        q_scale: The quantizer is ``q_scale * qp + q_offset``.
        q_offset: See ``q_scale``.
        qp_range: Ladder QPs accepted, inclusive.
        input_bitdepth: Sample depth the encoder takes (VVenC takes 10-bit only).
        version_pattern: Regex finding the encoder's version in FFmpeg's verbose log
            or in the bitstream (x264 and x265 write theirs into an SEI message).
    """

    name: str
    standard: str
    encoder: str
    muxer: str
    extension: str
    args: tuple[str, ...]
    preset: str
    version_pattern: str
    q_scale: int = 1
    q_offset: int = 0
    qp_range: tuple[int, int] = (0, 51)
    input_bitdepth: int = 8

    def quantizer(self, qp: int) -> int:
        """Map a ladder QP to this encoder's quantizer.

        Raises:
            NnslimError: The QP is outside ``qp_range``.
        """
        low, high = self.qp_range
        if not low <= qp <= high:
            raise NnslimError(f"QP {qp} is out of range for {self.name} ({low}..{high})")
        return self.q_scale * qp + self.q_offset

    def command_args(self, qp: int) -> list[str]:
        """FFmpeg output arguments for one encode at ladder QP ``qp``."""
        q = self.quantizer(qp)
        return [a.format(q=q, preset=self.preset) for a in self.args]


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# fmt: off
_CODEC_SPECS = (
    CodecSpec(
        name="x264", standard="H.264/AVC", encoder="libx264", muxer="h264", extension="264", preset="medium",
        args=_words("-c:v libx264 -preset {preset} -tune psnr -qp {q} -g 250"),
        version_pattern=r"x264 - core (\d+[\w ]*?) - ",
    ),
    CodecSpec(
        name="x265", standard="H.265/HEVC", encoder="libx265", muxer="hevc", extension="265", preset="medium",
        args=_words("-c:v libx265 -preset {preset} -tune psnr "
                    "-x265-params qp={q}:keyint=250:aq-mode=0:log-level=error"),
        version_pattern=r"x265 \(build \d+\) - ([\w.+\-]+)",
    ),
    CodecSpec(
        name="svtav1", standard="AV1", encoder="libsvtav1", muxer="ivf", extension="ivf", preset="8",
        args=_words("-c:v libsvtav1 -preset {preset} -g 250 -svtav1-params rc=0:qp={q}:aq-mode=0:tune=1"),
        version_pattern=r"SVT-AV1 Encoder Lib (\S+)", q_scale=2, q_offset=-21, qp_range=(11, 42),
    ),
    CodecSpec(
        name="aom", standard="AV1", encoder="libaom-av1", muxer="ivf", extension="ivf", preset="6",
        args=_words("-c:v libaom-av1 -cpu-used {preset} -row-mt 1 -crf {q} -b:v 0 -aq-mode 0 -tune psnr -g 250 "
                   "-aom-params deltaq-mode=0"),
        version_pattern=r"libaom-av1 @ \w+\] (v\d[\w.\-]*)", q_scale=2, q_offset=-21, qp_range=(11, 42),
    ),
    CodecSpec(
        name="vvenc", standard="H.266/VVC", encoder="libvvenc", muxer="vvc", extension="266", preset="faster",
        args=_words("-c:v libvvenc -preset {preset} -qp {q} -qpa 0 -period 10"),
        version_pattern=r"libvvenc version: (\S+)", input_bitdepth=10,
    ),
)
# fmt: on
CODECS: dict[str, CodecSpec] = {spec.name: spec for spec in _CODEC_SPECS}


def get_codec(name: str, preset: str | None = None) -> CodecSpec:
    """Look up a codec spec by name, optionally with another preset.

    Raises:
        NnslimError: The name is unknown.
    """
    if name not in CODECS:
        raise NnslimError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")
    spec = CODECS[name]
    return replace(spec, preset=preset) if preset else spec


def ffmpeg_exe() -> str:
    """Path of the static FFmpeg shipped in the imageio-ffmpeg wheel (or named by ``IMAGEIO_FFMPEG_EXE``).

    Raises:
        NnslimError: No FFmpeg there that can run.
    """
    try:
        path = imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:  # imageio-ffmpeg found no binary
        raise NnslimError(f"no FFmpeg: {exc} (make install puts imageio-ffmpeg's in the venv)") from None
    found = shutil.which(path)
    if found is None:
        raise NnslimError(f"no FFmpeg to run at {path} (is IMAGEIO_FFMPEG_EXE right? make install puts one in .venv)")
    return found


@functools.cache
def ffmpeg_version() -> str:
    """Version of the static FFmpeg, from ``ffmpeg -version``."""
    result = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r"ffmpeg version (\S+)", result.stdout)
    return match[1] if match else "unknown"


@dataclass(frozen=True)
class Encoded:
    """One encode and its decode.

    Attributes:
        codec: Codec name.
        qp: Ladder QP.
        quantizer: The encoder's own quantizer value.
        frames: Frames coded.
        bitstream: Path of the coded stream.
        bits: Coded payload bits (container overhead excluded).
        kbps: ``bits`` per second of video, in kbit/s.
        encode_wall_s: Wall time of the encoder process.
        encode_cpu_s: CPU time (user + system) of the encoder process.
        decode_s: Wall time of in-process decoding with PyAV.
        decoded: The decoded planes, 8-bit.
        encoder_version: Version string the encoder reported.
    """

    codec: str
    qp: int
    quantizer: int
    frames: int
    bitstream: Path
    bits: int
    kbps: float
    encode_wall_s: float
    encode_cpu_s: float
    decode_s: float
    decoded: Yuv420
    encoder_version: str


def _run_timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run a command; return its wall seconds, CPU seconds and stderr."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: stop the encoder too, so nothing keeps writing
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        log = err.read().decode(errors="replace")
    if proc.returncode:
        lines = [line for line in log.splitlines() if line.strip()]
        raise NnslimError(f"{cmd[0]} failed ({proc.returncode}): {lines[-1] if lines else 'no message'}")
    return wall, usage.ru_utime + usage.ru_stime, log


@functools.cache
def encoder_version(name: str) -> str:
    """Version string of an encoder, read from one tiny verbose encode.

    Raises:
        NnslimError: FFmpeg lacks the encoder.
    """
    spec = get_codec(name)
    pix = "yuv420p" if spec.input_bitdepth == 8 else "yuv420p10le"
    with tempfile.TemporaryDirectory() as scratch:
        probe = Path(scratch) / f"probe.{spec.extension}"
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-v",
            "verbose",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=64x64:d=0.04",
            "-pix_fmt",
            pix,
            *spec.command_args(32),
            "-f",
            spec.muxer,
            str(probe),
        ]
        try:
            _, _, log = _run_timed(cmd)
        except NnslimError as exc:
            raise NnslimError(f"encoder {spec.encoder} is not usable in {ffmpeg_exe()}: {exc}") from None
        log += probe.read_bytes().decode("latin-1")
    match = re.search(spec.version_pattern, log)
    return match[1] if match else "unknown"


def encode(seq: Sequence, spec: CodecSpec, qp: int, out_dir: Path, frames: int | None = None) -> Encoded:
    """Encode a sequence at a fixed QP with a real encoder, then decode it with PyAV.

    Args:
        seq: An 8-bit 4:2:0 sequence.
        spec: The codec.
        qp: Ladder QP (see the module table).
        out_dir: Where the bitstream is written.
        frames: Code only the first ``frames`` frames.

    Returns:
        The bitstream, the decoded 8-bit planes, and rates and times.

    Raises:
        NnslimError: Bad QP, missing encoder, encoder failure, or a decode that
            does not give back every frame.
    """
    if seq.bitdepth != 8:
        raise NnslimError(f"{seq.path.name}: expected an 8-bit sequence, got {seq.bitdepth}-bit")
    count = seq.frames if frames is None else frames
    if not 0 < count <= seq.frames:
        raise NnslimError(f"{seq.name} has {seq.frames} frames, cannot code {count}")
    codec_args = spec.command_args(qp)
    version = encoder_version(spec.name)
    bitstream = out_dir / f"{seq.name}_{seq.size}_{spec.name}_qp{qp}.{spec.extension}"
    partial = bitstream.with_name(f".{bitstream.name}.partial")
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        source = seq.path
        pix = "yuv420p"
        if spec.input_bitdepth == 10:
            source = Path(scratch) / "input10.yuv"
            write_yuv(source, to_10bit(read_yuv(seq, count)))
            pix = "yuv420p10le"
        cmd = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-y",
            "-v",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix,
            "-s",
            seq.size,
            "-r",
            f"{seq.fps:.6g}",
            "-i",
            str(source),
            "-frames:v",
            str(count),
            *codec_args,
            "-f",
            spec.muxer,
            str(partial),
        ]
        wall, cpu, _ = _run_timed(cmd)
    os.replace(partial, bitstream)
    decoded = decode_file(bitstream, spec.muxer)
    video = decoded.video if decoded.video.y.dtype.itemsize == 1 else to_8bit(decoded.video)
    if video.frames != count or (video.width, video.height) != (seq.width, seq.height):
        raise NnslimError(
            f"{bitstream.name}: decoded {video.frames} frames of {video.width}x{video.height}, "
            f"expected {count} of {seq.size}"
        )
    bits = decoded.payload_bytes * 8
    return Encoded(
        spec.name,
        qp,
        spec.quantizer(qp),
        count,
        bitstream,
        bits,
        bits / (count / seq.fps) / 1000,
        wall,
        cpu,
        decoded.seconds,
        video,
        version,
    )
