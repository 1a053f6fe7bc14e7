"""A filter to a `.nnsl` file and back: quantization (lossy) and coding (lossless) per tensor.

What each coder does with the state dict:

- ``raw``: every tensor as float32 or float16 bytes.
- ``nnr``: every tensor in one NNR bitstream (``nnr``), quantized at a QP; with ``lossless``, a
  weight-shared tensor is coded exactly instead, as int32 codebook indices in the NNR bitstream
  plus its codebook as a raw float32 side tensor named ``NAME#codebook``.
- ``huffman``: Deep Compression; each Conv2d/Linear weight is weight-shared by k-means to
  2**``bits`` values unless it already has that few, then Huffman coded (``huffman``); the other
  tensors (biases, PReLU slopes) stay raw float32, as in the paper.

``coders`` sends named tensors to another coder than the file's. The header carries the
architecture as data (arch name and arguments, the layers whose shapes compression changed),
what the filter was trained for, and the packing settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.bitstream import bounds, huffman, nnr
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
from nnslim.compress.quantize import kmeans
from nnslim.compress.sparsity import prunable_weights
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.filters import ArchSpec, build, is_trusted

CODERS = ("nnr", "huffman", "raw")
RAW_TYPES = {"float32": "<f4", "float16": "<f2", "int64": "<i8"}
SIDE = "#codebook"
TRAINING_KEYS = ("arch", "codec", "qps", "train_sequences", "validation_sequences")


@dataclass(frozen=True)
class PackConfig:
    """How to code a filter.

    Attributes:
        coder: ``nnr``, ``huffman`` or ``raw``: the file's coder.
        qp: NNR QP of weights (each +4 doubles the quantization step).
        nonweight_qp: NNR QP of biases and other one-dimensional tensors.
        dependent: NNR dependent (trellis-coded) quantization instead of uniform.
        lossless: NNR codes weight-shared tensors exactly (indices and codebook).
        bits: Huffman: k-means to 2**bits shared values (weights with more distinct values).
        index_bits: Huffman: bits of a relative index.
        raw_dtype: ``float32`` or ``float16`` for raw tensors.
        coders: Per-tensor coder overrides, name to coder.
    """

    coder: str = "nnr"
    qp: int = -32
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


def _shared(values: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(int32 indices with 0 for zero and 1 + codebook index otherwise, codebook) when few enough values."""
    codebook = np.unique(values[values != 0])
    if len(codebook) > limit:
        return None
    indices = np.where(values != 0, np.searchsorted(codebook, values) + 1, 0).astype(np.int32)
    return indices, codebook.astype(np.float32)


def _kmeans_shared(values: np.ndarray, bits: int) -> np.ndarray:
    """Deep Compression's weight sharing: non-zero values to 2**bits k-means centroids (zeros stay)."""
    if _shared(values, 1 << bits) is not None:
        return values
    centroids, indices = kmeans(torch.from_numpy(values), 1 << bits)
    shared = torch.cat([centroids.new_zeros(1), centroids])[indices + 1]
    return shared.numpy().astype(np.float32)


def _description(meta: dict[str, Any], config: PackConfig) -> dict[str, Any]:
    training = meta.get("training", {})
    return {
        "arch": meta["arch"],
        "layers": meta.get("layers", {}),
        "training": {k: training[k] for k in TRAINING_KEYS if k in training},
        "packing": {k: v for k, v in asdict(config).items() if k != "coders"} | {"coders": dict(config.coders)},
    }


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
    nnr_tensors: dict[str, np.ndarray] = {}
    nnr_entries: list[TensorEntry] = []

    def add_raw(name: str, values: np.ndarray, stored: str) -> None:
        dtype = "int64" if stored == "int64" else "float32"
        entries.append(TensorEntry(name, values.shape, dtype, "raw", len(chunks), {"stored": stored}))
        chunks.append(values.astype(RAW_TYPES[stored]).tobytes())

    for name, tensor in state.items():
        if not tensor.is_floating_point():
            if tensor.dtype != torch.int64:
                raise NnslimError(f"{name}: cannot pack a {tensor.dtype} tensor")
            add_raw(name, tensor.numpy(), "int64")  # BatchNorm's step counter
            continue
        values = tensor.float().numpy()
        coder = config.coders.get(name, config.coder)
        if coder == "raw" or (coder == "huffman" and name not in weights):
            add_raw(name, values, config.raw_dtype if coder == "raw" else "float32")
        elif coder == "huffman":
            sharing = _kmeans_shared(values, config.bits)
            clusters = len(np.unique(sharing[sharing != 0]))
            params: dict[str, Any] = {"index_bits": config.index_bits, "clusters": clusters}
            entries.append(TensorEntry(name, values.shape, "float32", "huffman", len(chunks), params))
            chunks.append(huffman.encode(sharing, config.index_bits))
        else:
            shared = _shared(values, 1 << 16) if config.lossless else None
            if shared is None:
                nnr_tensors[name] = values
                params = {"qp": config.qp if values.ndim > 1 else config.nonweight_qp, "dependent": config.dependent}
            else:
                nnr_tensors[name], codebook = shared
                add_raw(name + SIDE, codebook, "float32")
                params = {"codebook": name + SIDE}
            nnr_entries.append(TensorEntry(name, values.shape, "float32", "nnr", -1, params))
    if nnr_tensors:
        index = len(chunks)
        chunks.append(nnr.encode(nnr_tensors, config.qp, config.nonweight_qp, config.dependent))
        entries += [TensorEntry(e.name, e.shape, e.dtype, e.coder, index, e.params) for e in nnr_entries]
    order = {name: i for i, name in enumerate(state)}
    entries.sort(key=lambda e: (order.get(e.name.removesuffix(SIDE), len(order)), e.name))
    return write(Container(_description(meta, config), tuple(entries), tuple(chunks)))


DECODED_TYPES = {"float32": ("float32", "float16"), "float16": ("float32", "float16"), "int64": ("int64",)}
"""Table dtypes that a raw tensor of each stored type may decode to (huffman and nnr decode to floats)."""


def _check_raw(entry: TensorEntry, table: dict[str, TensorEntry]) -> None:
    stored = entry.params.get("stored")
    if not isinstance(stored, str) or stored not in RAW_TYPES or entry.dtype not in DECODED_TYPES[stored]:
        raise BitstreamError(f"tensor {entry.name!r}: raw {entry.dtype} tensor stored as {shorten(repr(stored))}")


def _check_huffman(entry: TensorEntry, table: dict[str, TensorEntry]) -> None:
    index_bits, clusters = entry.params.get("index_bits"), entry.params.get("clusters")
    if not isinstance(index_bits, int) or not isinstance(clusters, int) or bool in (type(index_bits), type(clusters)):
        raise BitstreamError(f"tensor {entry.name!r}: huffman needs integer index_bits and clusters")
    if not (1 <= index_bits <= 16 and 0 <= clusters <= huffman.MAX_CLUSTERS):
        raise BitstreamError(
            f"tensor {entry.name!r}: index_bits {index_bits} (1 to 16) or clusters {clusters} "
            f"(0 to {huffman.MAX_CLUSTERS}) out of range"
        )


def _check_nnr(entry: TensorEntry, table: dict[str, TensorEntry]) -> None:
    side, qp = entry.params.get("codebook"), entry.params.get("qp")
    if side is not None:
        if not isinstance(side, str) or side not in table or table[side].coder != "raw":
            raise BitstreamError(f"tensor {entry.name!r}: its codebook {shorten(repr(side))} is no raw tensor")
    elif isinstance(qp, bool) or not isinstance(qp, int) or qp not in nnr.QP_RANGE:
        raise BitstreamError(
            f"tensor {entry.name!r}: nnr qp must be an integer from {nnr.QP_RANGE.start} to {nnr.QP_RANGE.stop - 1}"
        )


_CHECKS = {"raw": _check_raw, "huffman": _check_huffman, "nnr": _check_nnr}


def _payload_bytes(entries: list[TensorEntry]) -> tuple[int, int]:
    """Fewest and most bytes a chunk of these tensors may hold, by their coder."""
    if entries[0].coder == "raw":
        exact = entries[0].elements * np.dtype(RAW_TYPES[entries[0].params["stored"]]).itemsize
        return exact, exact
    if entries[0].coder == "huffman":
        return 0, huffman.max_payload_bytes(entries[0].elements)
    return 0, nnr.max_payload_bytes({e.name: e.elements for e in entries})


def _check_chunk(index: int, length: int, entries: list[TensorEntry]) -> None:
    coders = sorted({e.coder for e in entries})
    if coders not in (["nnr"], ["huffman"], ["raw"]) or (coders != ["nnr"] and len(entries) > 1):
        raise BitstreamError(
            f"chunk {index}: holds {len(entries)} tensors ({', '.join(coders) or 'none'}); a chunk holds "
            "one raw or huffman tensor, or nnr tensors"
        )
    fewest, most = _payload_bytes(entries)
    if not fewest <= length <= most:
        names = shorten(", ".join(e.name for e in entries), 80)
        raise BitstreamError(f"chunk {index} ({names}): {length} bytes, where its tensors take {fewest} to {most}")


def check_table(container: Container) -> None:
    """Each tensor's coder and the coder's parameters, and each chunk's length, checked before anything is decoded.

    Raises:
        BitstreamError: An unknown coder, parameters that its coder does not take, or a chunk that
            holds no tensor, tensors of several coders, or more (or, raw, other) bytes than its tensors take.
    """
    table = {entry.name: entry for entry in container.tensors}
    held: dict[int, list[TensorEntry]] = {}
    for entry in container.tensors:
        if entry.coder not in _CHECKS:
            raise BitstreamError(f"tensor {entry.name!r}: unknown coder {shorten(repr(entry.coder))}")
        if entry.coder != "raw" and entry.dtype not in DECODED_TYPES["float32"]:
            raise BitstreamError(f"tensor {entry.name!r}: {entry.coder} decodes to floats, not {entry.dtype}")
        _CHECKS[entry.coder](entry, table)
        held.setdefault(entry.chunk, []).append(entry)
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
    out: dict[str, np.ndarray] = {}
    nnr_cache: dict[int, dict[str, np.ndarray]] = {}
    for entry in container.tensors:
        payload = container.chunks[entry.chunk]
        if entry.coder == "raw":
            values = np.frombuffer(payload, dtype=RAW_TYPES[entry.params["stored"]])
        elif entry.coder == "huffman":
            values = huffman.decode(payload, entry.elements)
        else:
            if entry.chunk not in nnr_cache:
                expected = {e.name: e.elements for e in container.tensors if e.chunk == entry.chunk}
                nnr_cache[entry.chunk] = nnr.decode(payload, expected, limits)
            values = nnr_cache[entry.chunk][entry.name]
        if values.size != entry.elements:
            raise BitstreamError(f"{entry.name}: decoded {values.size} values, the table says {list(entry.shape)}")
        out[entry.name] = values.reshape(entry.shape)
    for entry in container.tensors:
        side = entry.params.get("codebook")
        if entry.coder == "nnr" and side is not None:
            indices, codebook = out[entry.name], out[side]
            if indices.dtype != np.int32 or indices.min(initial=0) < 0:
                raise BitstreamError(f"{entry.name}: bad codebook indices")
            if indices.max(initial=0) > codebook.size:
                raise BitstreamError(f"{entry.name}: codebook index beyond its {codebook.size} values")
            out[entry.name] = np.concatenate([[0.0], codebook.ravel()]).astype(np.float32)[indices]
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
        shape of a filter file's JSON.

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
    return model, description


def _entropy_bits(symbols: np.ndarray) -> float:
    """Zeroth-order empirical entropy of the symbols, in bits for all of them."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return max(0.0, float(-(counts * np.log2(p)).sum()))


def _symbols(entry: TensorEntry, values: np.ndarray) -> np.ndarray:
    """What the coder codes of a decoded tensor: NNR levels, shared-weight indices, or the raw values."""
    if entry.coder == "nnr" and entry.params.get("codebook") is None:
        with np.errstate(invalid="ignore", over="ignore"):  # a hostile bitstream may decode to infinities
            return np.rint(values / nnr.step_size(entry.params["qp"])).astype(np.int64)
    return values


def _estimate(entry: TensorEntry, values: np.ndarray) -> dict[str, Any]:
    """A decoded tensor's entropy estimate (bits) and non-zero count."""
    if entry.coder == "raw":
        estimate = 8.0 * np.dtype(RAW_TYPES[entry.params["stored"]]).itemsize * entry.elements
    else:
        estimate = _entropy_bits(_symbols(entry, values))
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
        if entry.coder == "huffman":
            row["compression_rate"] = huffman.compression_rate(entry.elements, entry.params["clusters"])
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
        "model": container.model,
        "chunks": chunks,
        "tensors": rows,
    }
    if decode:
        info["entropy_bytes"] = sum(r["entropy_bits"] for r in rows) / 8.0
    return info
