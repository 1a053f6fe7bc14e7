"""A filter to a `.nnsl` file and back: quantization (lossy) and coding (lossless) per tensor.

Each coder of the registry (``coders.CODERS``) says what it does with the state dict:

- ``raw``: every tensor as float32 or float16 bytes.
- ``nnr``: every tensor in one NNR bitstream (``nnr``), quantized at a QP; with ``lossless``, a
  weight-shared tensor is coded exactly instead, as int32 codebook indices in the NNR bitstream
  plus its codebook as a raw float32 side tensor named ``NAME#codebook``.
- ``huffman``: Deep Compression; each Conv2d/Linear weight is weight-shared by k-means to
  2**``bits`` values unless it already has that few, then Huffman coded (``huffman``); the other
  tensors (biases, PReLU slopes) stay raw float32, as in the paper.

``coders`` sends named tensors to another coder than the file's. The header carries the
architecture as data (arch name and arguments, the layers whose shapes compression changed),
what the filter was trained for, and the packing settings (``nnr_qp`` was ``qp`` in older
files; a decoded description carries both names).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.bitstream import bounds
from nnslim.bitstream.coders import CODERS, Coded, Joined, Tensor, raw
from nnslim.bitstream.coders.nnr import SIDE
from nnslim.bitstream.container import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_PARAMS,
    BitstreamError,
    Container,
    Limits,
    TensorEntry,
    read,
    shorten,
    write,
)
from nnslim.compress.sparsity import prunable_weights
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.filters import ArchSpec, build, is_trusted

TRAINING_KEYS = ("arch", "codec", "qps", "train_sequences", "validation_sequences")


@dataclass(frozen=True)
class PackConfig:
    """How to code a filter.

    Attributes:
        coder: A coder of ``CODERS`` (``nnr``, ``huffman`` or ``raw``): the file's coder.
        nnr_qp: NNR QP of weights (each +4 doubles the quantization step).
        nonweight_qp: NNR QP of biases and other one-dimensional tensors.
        dependent: NNR dependent (trellis-coded) quantization instead of uniform.
        lossless: NNR codes weight-shared tensors exactly (indices and codebook).
        bits: Huffman: k-means to 2**bits shared values (weights with more distinct values).
        index_bits: Huffman: bits of a relative index.
        raw_dtype: ``float32`` or ``float16`` for raw tensors.
        coders: Per-tensor coder overrides, name to coder.
    """

    coder: str = "nnr"
    nnr_qp: int = -32
    nonweight_qp: int = -64
    dependent: bool = False
    lossless: bool = False
    bits: int = 6
    index_bits: int = 8
    raw_dtype: str = "float32"
    coders: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, coder in (("coder", self.coder), *self.coders.items()):
            if coder not in CODERS:
                raise NnslimError(f"{name}: unknown coder {coder!r}; use one of {', '.join(CODERS)}")
        if self.raw_dtype not in ("float32", "float16"):
            raise NnslimError(f"raw_dtype must be float32 or float16, not {self.raw_dtype!r}")


def _description(meta: dict[str, Any], config: PackConfig) -> dict[str, Any]:
    training = meta.get("training", {})
    return {
        "arch": meta["arch"],
        "layers": meta.get("layers", {}),
        "training": {k: training[k] for k in TRAINING_KEYS if k in training},
        "packing": {k: v for k, v in asdict(config).items() if k != "coders"} | {"coders": dict(config.coders)},
    }


def _current(model: dict[str, Any]) -> dict[str, Any]:
    """A file's description with the NNR QP of its packing under both names, ``nnr_qp`` and the older ``qp``."""
    packing = model.get("packing")
    if not isinstance(packing, dict) or ("qp" in packing) == ("nnr_qp" in packing):
        return model
    value = packing.get("nnr_qp", packing.get("qp"))
    return model | {"packing": packing | {"nnr_qp": value, "qp": value}}


def _coded(name: str, tensor: torch.Tensor, weight: bool, config: PackConfig) -> tuple[Coded, ...]:
    """What the tensor's coder makes of it; an integer tensor (BatchNorm's step counter) is stored raw."""
    if not tensor.is_floating_point():
        if tensor.dtype != torch.int64:
            raise NnslimError(f"{name}: cannot pack a {tensor.dtype} tensor")
        return (raw.stored(name, tensor.numpy(), "int64"),)
    coder = CODERS[config.coders.get(name, config.coder)]
    return coder.encode(Tensor(name, tensor.float().numpy(), weight), config)


def pack(model: nn.Module, meta: dict[str, Any], config: PackConfig) -> bytes:
    """Quantize and code a filter into `.nnsl` bytes; the same inputs always give the same bytes.

    Args:
        model: The filter (slim or not), matching ``meta``.
        meta: Its JSON description (``load_filter``'s second value).
        config: The coding settings.

    Raises:
        NnslimError: A tensor the chosen coder cannot take, or an override naming no tensor.
    """
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    unknown = sorted(set(config.coders) - set(state))
    if unknown:
        raise NnslimError(f"--tensor-coder names no tensor of the model: {', '.join(unknown)}")
    weights = {f"{name}.weight" for name in prunable_weights(model)}
    chunks: list[bytes] = []
    entries: list[TensorEntry] = []
    joined: dict[str, list[Joined]] = {}
    for name, tensor in state.items():
        for coded in _coded(name, tensor, name in weights, config):
            if isinstance(coded, Joined):
                joined.setdefault(coded.entry.coder, []).append(coded)
            else:
                entries.append(replace(coded.entry, chunk=len(chunks)))
                chunks.append(coded.payload)
    for coder, members in joined.items():
        join = CODERS[coder].join
        assert join is not None, f"the {coder} coder joins tensors but has no join"
        entries += [replace(member.entry, chunk=len(chunks)) for member in members]
        chunks.append(join({member.entry.name: member.values for member in members}, config))
    order = {name: i for i, name in enumerate(state)}
    entries.sort(key=lambda e: (order.get(e.name.removesuffix(SIDE), len(order)), e.name))
    return write(Container(_description(meta, config), tuple(entries), tuple(chunks)))


def _chunk_rule() -> str:
    """What a chunk may hold, by the coders of the registry."""
    single = " or ".join(name for name, coder in CODERS.items() if coder.join is None)
    joint = " or ".join(name for name, coder in CODERS.items() if coder.join is not None)
    return ", or ".join([*([f"one {single} tensor"] if single else []), *([f"{joint} tensors"] if joint else [])])


def _check_chunk(index: int, length: int, entries: list[TensorEntry]) -> None:
    coders = sorted({e.coder for e in entries})
    if len(coders) != 1 or (CODERS[coders[0]].join is None and len(entries) > 1):
        raise BitstreamError(
            f"chunk {index}: holds {len(entries)} tensors ({', '.join(coders) or 'none'}); a chunk holds "
            + _chunk_rule()
        )
    fewest, most = CODERS[coders[0]].payload_bytes(entries)
    if not fewest <= length <= most:
        names = shorten(", ".join(e.name for e in entries), 80)
        raise BitstreamError(f"chunk {index} ({names}): {length} bytes, where its tensors take {fewest} to {most}")


def _held(container: Container) -> dict[int, list[TensorEntry]]:
    """The entries of each chunk that holds any, by chunk index."""
    held: dict[int, list[TensorEntry]] = {}
    for entry in container.tensors:
        held.setdefault(entry.chunk, []).append(entry)
    return held


def check_table(container: Container) -> None:
    """Each tensor's coder and the coder's parameters, and each chunk's length, checked before anything is decoded.

    Raises:
        BitstreamError: An unknown coder, parameters that its coder does not take, or a chunk that
            holds no tensor, tensors of several coders, or more (or, raw, other) bytes than its tensors take.
    """
    table = {entry.name: entry for entry in container.tensors}
    for entry in container.tensors:
        if entry.coder not in CODERS:
            raise BitstreamError(f"tensor {entry.name!r}: unknown coder {shorten(repr(entry.coder))}")
        CODERS[entry.coder].check(entry, table)
    held = _held(container)
    for index, chunk in enumerate(container.chunks):
        _check_chunk(index, len(chunk), held.get(index, []))


def decode_tensors(container: Container, limits: Limits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """Every tensor of a parsed file, decoded to its table dtype (side tensors included).

    Args:
        container: The parsed file (``read`` checked its sizes against ``limits``).
        limits: What an NNR bitstream may declare beyond the table.

    Raises:
        BitstreamError: A coder or coder parameters ``check_table`` refuses, a payload its coder
            refuses, or a decoded tensor of another shape than the table's.
    """
    check_table(container)
    held = _held(container)
    out: dict[str, np.ndarray] = {}
    decoded: dict[int, dict[str, np.ndarray]] = {}
    for entry in container.tensors:
        if entry.chunk not in decoded:
            payload = container.chunks[entry.chunk]
            decoded[entry.chunk] = CODERS[entry.coder].decode(payload, held[entry.chunk], limits)
        values = decoded[entry.chunk][entry.name]
        if values.size != entry.elements:
            raise BitstreamError(f"{entry.name}: decoded {values.size} values, the table says {list(entry.shape)}")
        out[entry.name] = values.reshape(entry.shape)
    for entry in container.tensors:
        out[entry.name] = CODERS[entry.coder].resolve(entry, out)
    dtypes = {entry.name: entry.dtype for entry in container.tensors}
    return {name: value.astype(dtypes[name], copy=False) for name, value in out.items()}


def _skeleton(
    spec: ArchSpec, table: dict[str, dict[str, Any]], trusted_factory: str | None, limits: Limits
) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of the architecture a file describes, built on the meta device (no memory).

    ``bounds.description`` has bounded a built-in architecture and the layer table already; a
    user factory, built only when trusted, is bounded here.

    Raises:
        BitstreamError: A user factory that was not trusted, a description that does not build, or
            more parameters than the limit.
    """
    if not is_trusted(spec.name, trusted_factory):
        raise BitstreamError(
            f"the file's architecture is the user factory {shorten(spec.name, 300)}, whose code nnslim runs only "
            "when told to: give --trust-factory with that name if you trust it"
        )
    try:
        with torch.device("meta"):
            skeleton = layers.apply(build(spec), table)
    except (TypeError, ValueError, RuntimeError, NnslimError) as exc:
        raise BitstreamError(f"the file's architecture cannot be built ({shorten(str(exc), 200)})") from None
    shapes = {name: tuple(value.shape) for name, value in skeleton.state_dict().items()}
    parameters = sum(math.prod(shape) for shape in shapes.values())
    if parameters > limits.max_params:
        raise BitstreamError(
            f"architecture {shorten(spec.name)}: {parameters} parameters; the limit is {limits.max_params} "
            "(see --max-params)"
        )
    return shapes


def unpack(
    data: bytes, trusted_factory: str | None = None, *, max_params: int = DEFAULT_MAX_PARAMS
) -> tuple[nn.Module, dict[str, Any]]:
    """Decode `.nnsl` bytes into a runnable filter of the slim architecture, in eval mode.

    Every size the file declares is checked against the limits first (``container.Limits``), the
    architecture's from its description alone; then the architecture is built without memory and
    its tensor shapes compared with the file's tensor table, so a hostile file cannot make nnslim
    allocate what the file does not hold. Only then are the tensors decoded and the model built.

    Args:
        data: The file's bytes.
        trusted_factory: A user architecture (``file.py:factory``) that may be built; files
            naming any other factory are refused, since building it runs its code.
        max_params: Most parameters the filter may have.

    Returns:
        The model and its description (``arch``, ``layers``, ``training``, ``packing``), the
        shape of a filter file's JSON; the packing's NNR QP is under ``nnr_qp`` and, as older files named it, ``qp``.

    Raises:
        BitstreamError: A corrupt file, one over a limit, an untrusted factory, or tensors that do
            not fit the architecture.
        NnslimError: A ``max_params`` that is not a positive integer.
    """
    limits = Limits.for_params(max_params)
    container = read(data, limits)
    description = container.model
    spec, table = bounds.description(description, limits)
    check_table(container)
    shapes = _skeleton(spec, table, trusted_factory, limits)
    stored = {e.name: e.shape for e in container.tensors if not e.name.endswith(SIDE)}
    if stored != shapes:
        wrong = sorted(set(stored.items()) ^ set(shapes.items()))[0][0]
        raise BitstreamError(f"the tensor table does not fit the architecture (first difference: {shorten(wrong)})")
    tensors = decode_tensors(container, limits)
    model = layers.apply(build(spec), table)
    model.load_state_dict({name: torch.from_numpy(tensors[name].copy()) for name in shapes})
    model.eval()
    return model, _current(description)


def _estimate(entry: TensorEntry, values: np.ndarray) -> dict[str, Any]:
    """A decoded tensor's entropy estimate (bits) and non-zero count."""
    estimate = CODERS[entry.coder].estimate_bits(entry, values)
    return {"entropy_bits": estimate, "nonzero": int(np.count_nonzero(values))}


def summary(data: bytes, decode: bool = False, *, max_params: int = DEFAULT_MAX_PARAMS) -> dict[str, Any]:
    """What a file holds: its description, chunks and tensor table, read and checked without building anything.

    With ``decode``, each tensor also gets its non-zero count and an entropy estimate beside the
    real bytes: the zeroth-order entropy of what the coder codes (NNR quantization levels,
    shared-weight values, or raw values at their stored width), which context-adaptive coding
    (DeepCABAC) can beat. A chunk shared by several tensors (one NNR bitstream) is listed once.

    Args:
        data: The file's bytes.
        decode: Decode the tensors for the estimates.
        max_params: Most parameters the filter may have.

    Raises:
        BitstreamError: A corrupt file, or one over a limit.
        NnslimError: A ``max_params`` that is not a positive integer.
    """
    limits = Limits.for_params(max_params)
    container = read(data, limits)
    bounds.description(container.model, limits)
    check_table(container)
    tensors = decode_tensors(container, limits) if decode else {}
    rows: list[dict[str, Any]] = []
    for entry in container.tensors:
        row: dict[str, Any] = {
            "name": entry.name,
            "shape": list(entry.shape),
            "coder": entry.coder,
            "chunk": entry.chunk,
            "params": entry.params,
        }
        row |= CODERS[entry.coder].details(entry)
        if decode:
            row |= _estimate(entry, tensors[entry.name])
        rows.append(row)
    chunks = [
        {"index": i, "bytes": len(chunk), "tensors": [e.name for e in container.tensors if e.chunk == i]}
        for i, chunk in enumerate(container.chunks)
    ]
    payload = sum(len(c) for c in container.chunks)
    info = {
        "bytes": len(data),
        "payload_bytes": payload,
        "header_bytes": len(data) - payload,
        "model": _current(container.model),
        "chunks": chunks,
        "tensors": rows,
    }
    if decode:
        info["entropy_bytes"] = sum(r["entropy_bits"] for r in rows) / 8.0
    return info
