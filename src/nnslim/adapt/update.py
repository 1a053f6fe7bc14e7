"""The content-adaptive update file (`.nnsu`): a filter update and its switch flags, for one coded sequence.

It is an `.nnsl` container (same magic, limits, CRCs and one-line errors) whose description
says ``format: nnslim-update``, and whose one chunk is one plain NNR bitstream (NNCodec's core)
holding up to two tensors, named by one letter each (a codec carries every byte of their data
units, names included):

- ``u`` (``VALUES``, float32): the adapted parameters' changes (``params``), quantized by NNR's
  uniform quantizer at ``nnr_qp`` and DeepCABAC-coded;
- ``f`` (``FLAGS``, int32, 0 or 1, shape frames x rows x cols): the switch's per-block flags, coded
  exactly by DeepCABAC, sent only when they differ: ``switch`` in the description says ``on``
  (every block on), ``off`` (every block off) or ``blocks`` (the flags tensor says).

The description names the base filter by the SHA-256 of its file (any other base is refused),
the sequence, codec and QP the update was made for, and the switch's block size. What a codec
would carry (``signalled_bytes``) is the NNR bitstream's compressed data units, plus one byte
for the switch's mode when there is a switch. The rest is known to a decoder out of band: the
bitstream's header units (``nnr.header``, the same 18 bytes for every update; the file keeps
them, so that NNCodec reads its chunk alone) and the description (the filter it holds, the
video it decodes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nnslim.adapt.params import MODES, Mode, size
from nnslim.adapt.switch import BLOCKS, grid
from nnslim.bitstream import nnr
from nnslim.bitstream.container import (
    DEFAULT_LIMITS,
    BitstreamError,
    Container,
    Limits,
    TensorEntry,
    read,
    shorten,
    write,
)
from nnslim.bitstream.pack import decode_tensors

FORMAT = "nnslim-update"
VERSION = 2
"""Version 2 names the NNR tensors ``u`` and ``f`` (version 1: ``update`` and ``flags``)."""
VALUES = "u"
"""NNR tensor name of the update's values."""
FLAGS = "f"
"""NNR tensor name of the switch's flags."""
MAX_SIDE = 16384
"""Largest frame width or height an update's flags may cover."""
MAX_FRAMES = 1 << 20
"""Most frames an update's flags may cover."""
MAX_FLAGS = 1 << 24
"""Most flags (blocks of all frames) an update may hold."""
SWITCH_MODES = ("on", "off", "blocks")
"""How a switch is sent: every block on, every block off, or one flag per block."""
MODE_BYTES = 1
"""Bytes a codec sends for the switch's mode."""
FIELDS = ("base_sha256", "sequence", "codec", "qp", "mode", "values", "nnr_qp", "block", "width", "height", "frames",
          "switch")  # fmt: skip
"""The fields every update's description holds (``nnr_qp``, ``block`` and ``switch`` may be null)."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Update:
    """A decoded update, as both encoder and decoder use it.

    Attributes:
        base_sha256: SHA-256 of the base filter's file.
        sequence: The sequence it was made for.
        codec: That sequence's codec.
        qp: The codec QP of the decoded video it filters.
        mode: What adapts (``params.MODES``).
        values: The dequantized update (empty for ``none``).
        nnr_qp: NNR QP of ``values`` (None when there are none).
        block: The switch's block side; None: no switch (the filter runs everywhere).
        flags: Per block, whether the filter is applied (frames, rows, cols), or None without a switch.
        width: Frame width the flags cover.
        height: Frame height the flags cover.
        frames: Frames the flags cover.
    """

    base_sha256: str
    sequence: str
    codec: str
    qp: int
    mode: Mode
    values: np.ndarray
    nnr_qp: int | None
    block: int | None
    flags: np.ndarray | None
    width: int
    height: int
    frames: int

    @property
    def off(self) -> bool:
        """Whether the switch turns the filter off in every block."""
        return self.switch == "off"

    @property
    def switch(self) -> str | None:
        """The switch's mode (``SWITCH_MODES``), None without a switch."""
        if self.flags is None:
            return None
        return "on" if self.flags.all() else "off" if not self.flags.any() else "blocks"

    def describe(self) -> dict[str, Any]:
        """The description written in the file."""
        return {
            "format": FORMAT, "version": VERSION, "base_sha256": self.base_sha256, "sequence": self.sequence,
            "codec": self.codec, "qp": self.qp, "mode": self.mode, "values": int(self.values.size),
            "nnr_qp": self.nnr_qp, "block": self.block, "width": self.width, "height": self.height,
            "frames": self.frames, "switch": self.switch,
        }  # fmt: skip


def encode(update: Update) -> bytes:
    """The `.nnsu` bytes of an update (``values`` quantized at ``nnr_qp``); the same update gives the same bytes.

    Raises:
        NnslimError: An NNR QP out of range, or values too large for it.
    """
    tensors: dict[str, np.ndarray] = {}
    entries: list[TensorEntry] = []
    if update.values.size:
        assert update.nnr_qp is not None, "an update with values needs its NNR QP"
        tensors[VALUES] = update.values.astype(np.float32)
        entries.append(TensorEntry(VALUES, (update.values.size,), "float32", "nnr", 0, {"qp": update.nnr_qp}))
    if update.flags is not None and update.switch == "blocks":
        tensors[FLAGS] = update.flags.astype(np.int32)
        entries.append(TensorEntry(FLAGS, tuple(update.flags.shape), "int32", "nnr", 0))
    nnr_qp = update.nnr_qp if update.nnr_qp is not None else 0
    chunks = (nnr.encode(tensors, nnr_qp, nnr_qp),) if tensors else ()
    return write(Container(update.describe(), tuple(entries), chunks))


def signalled_bytes(data: bytes) -> int:
    """Bytes a codec would carry for this update: its NNR data units and, with a switch, the switch's mode.

    Raises:
        BitstreamError: A file that is not an update, or whose NNR header units are not this coder's.
    """
    container = read(data)
    _description(container.model)
    chunk = nnr.data_bytes(container.chunks[0]) if container.chunks else 0
    return chunk + (MODE_BYTES if container.model["block"] is not None else 0)


def _int(description: dict[str, Any], key: str, low: int, high: int) -> int:
    value = description.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BitstreamError(f"update: {key} must be an integer from {low} to {high}, not {shorten(repr(value))}")
    return value


def _description(description: dict[str, Any]) -> dict[str, Any]:
    """The update's description, every field checked and bounded before anything is decoded.

    Raises:
        BitstreamError: Another format or version, or a missing, mistyped or out-of-range field.
    """
    if description.get("format") != FORMAT:
        raise BitstreamError("not an update file (an .nnsl filter? give it as the filter, not as --update)")
    if description.get("version") != VERSION:
        version = shorten(repr(description.get("version")))
        raise BitstreamError(f"update: format version {version}; this nnslim reads {VERSION} (re-run nnslim adapt)")
    missing = [key for key in FIELDS if key not in description]
    if missing:
        raise BitstreamError(f"update: no {', '.join(missing)} in its description")
    for key in ("base_sha256", "sequence", "codec"):
        if not isinstance(description.get(key), str) or len(description[key]) > 256:
            raise BitstreamError(f"update: {key} must be a short string")
    if description.get("mode") not in MODES:
        raise BitstreamError(f"update: mode must be one of {', '.join(MODES)}")
    _int(description, "qp", 0, 255)
    _int(description, "values", 0, DEFAULT_LIMITS.max_params)
    if description.get("block") is not None and description["block"] not in BLOCKS:
        raise BitstreamError(f"update: block must be one of {', '.join(map(str, BLOCKS))} or null")
    if description.get("nnr_qp") is not None:
        _int(description, "nnr_qp", nnr.QP_RANGE.start, nnr.QP_RANGE.stop - 1)
    width, height = _int(description, "width", 1, MAX_SIDE), _int(description, "height", 1, MAX_SIDE)
    frames = _int(description, "frames", 1, MAX_FRAMES)
    if description["block"] is not None:
        rows, cols = grid(height, width, description["block"])
        if frames * rows * cols > MAX_FLAGS:
            raise BitstreamError(f"update: more than the limit of {MAX_FLAGS} switch flags")
    if description.get("switch") not in ((None,) if description["block"] is None else SWITCH_MODES):
        raise BitstreamError("update: switch must be on, off or blocks with a block size, null without")
    return description


def _expected(description: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The tensors the description says the file holds: name to shape and dtype."""
    wanted: dict[str, tuple[tuple[int, ...], str]] = {}
    if description["values"]:
        wanted[VALUES] = ((description["values"],), "float32")
    block = description["block"]
    if description["switch"] == "blocks":
        wanted[FLAGS] = ((description["frames"], *grid(description["height"], description["width"], block)), "int32")
    return wanted


def decode(data: bytes, base: nn.Module, base_sha256: str, limits: Limits = DEFAULT_LIMITS) -> Update:
    """Read an update made for ``base`` (whose file has SHA-256 ``base_sha256``), every field checked first.

    Raises:
        BitstreamError: A corrupt or hostile file, one made for another base, or one whose tensors
            do not fit its description or the base filter.
    """
    container = read(data, limits)
    description = _description(container.model)
    if description["base_sha256"] != base_sha256:
        raise BitstreamError(
            f"the update was made for the filter with SHA-256 {shorten(description['base_sha256'], 16)}, "
            f"not this one ({base_sha256[:16]}...)"
        )
    mode: Mode = description["mode"]
    if description["values"] != size(base, mode):
        raise BitstreamError(
            f"update: {description['values']} values; a {mode} update of this filter has {size(base, mode)}"
        )
    wanted = _expected(description)
    table = {e.name: (e.shape, e.dtype) for e in container.tensors}
    if table != wanted or any(e.coder != "nnr" for e in container.tensors) or len(container.chunks) != bool(wanted):
        raise BitstreamError("update: its tensors do not fit its description")
    entries = {e.name: e for e in container.tensors}
    if VALUES in entries and entries[VALUES].params.get("qp") != description["nnr_qp"]:
        raise BitstreamError("update: the NNR QP of its values differs from its description's")
    if container.chunks:
        nnr.data_bytes(container.chunks[0])  # its header units must be the ones a decoder rebuilds
    tensors = decode_tensors(container, limits) if wanted else {}
    values = tensors.get(VALUES, np.zeros(0, np.float32))
    if not np.isfinite(values).all():
        raise BitstreamError("update: values that are not finite")
    flags = None
    if description["block"] is not None:
        shape = (description["frames"], *grid(description["height"], description["width"], description["block"]))
        uniform = np.full(shape, int(description["switch"] == "on"), np.int32)
        flags = tensors.get(FLAGS, uniform)
        if flags.min(initial=0) < 0 or flags.max(initial=0) > 1:
            raise BitstreamError("update: switch flags other than 0 and 1")
        flags = flags.astype(bool)
    return Update(
        description["base_sha256"], description["sequence"], description["codec"], description["qp"], mode, values,
        description["nnr_qp"], description["block"], flags, description["width"], description["height"],
        description["frames"],
    )  # fmt: skip
