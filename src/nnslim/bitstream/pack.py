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

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnslim.bitstream import huffman, nnr
from nnslim.bitstream.container import BitstreamError, Container, TensorEntry, read, write
from nnslim.compress.quantize import kmeans
from nnslim.compress.sparsity import prunable_weights
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.filters import REGISTRY, ArchSpec, build

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


def decode_tensors(container: Container) -> dict[str, np.ndarray]:
    """Every tensor of a parsed file, decoded to its table dtype (side tensors included).

    Raises:
        BitstreamError: A payload its coder refuses, or a decoded tensor of another shape than the table's.
    """
    out: dict[str, np.ndarray] = {}
    nnr_cache: dict[int, dict[str, np.ndarray]] = {}
    for entry in container.tensors:
        payload = container.chunks[entry.chunk]
        if entry.coder == "raw":
            stored = entry.params.get("stored")
            if stored not in RAW_TYPES or (stored == "int64") != (entry.dtype == "int64"):
                raise BitstreamError(f"{entry.name}: raw {entry.dtype} tensor stored as {stored!r}")
            width = np.dtype(RAW_TYPES[stored]).itemsize
            if len(payload) != entry.elements * width:
                raise BitstreamError(f"{entry.name}: raw payload of {len(payload)} bytes for {entry.elements} values")
            values = np.frombuffer(payload, dtype=RAW_TYPES[stored])
        elif entry.coder == "huffman":
            values = huffman.decode(payload, entry.elements)
        elif entry.coder == "nnr":
            if entry.chunk not in nnr_cache:
                nnr_cache[entry.chunk] = nnr.decode(payload)
            if entry.name not in nnr_cache[entry.chunk]:
                raise BitstreamError(f"{entry.name}: missing from its NNR bitstream")
            values = nnr_cache[entry.chunk][entry.name]
        else:
            raise BitstreamError(f"{entry.name}: unknown coder {entry.coder!r}")
        if values.size != entry.elements:
            raise BitstreamError(f"{entry.name}: decoded {values.size} values, the table says {list(entry.shape)}")
        out[entry.name] = values.reshape(entry.shape)
    for entry in container.tensors:
        side = entry.params.get("codebook")
        if entry.coder == "nnr" and side is not None:
            indices, codebook = out[entry.name], out.get(side)
            if codebook is None or indices.dtype != np.int32 or indices.min(initial=0) < 0:
                raise BitstreamError(f"{entry.name}: bad codebook indices or missing codebook {side!r}")
            if indices.max(initial=0) > len(codebook):
                raise BitstreamError(f"{entry.name}: codebook index beyond its {len(codebook)} values")
            out[entry.name] = np.concatenate([[0.0], codebook.ravel()]).astype(np.float32)[indices]
    dtypes = {entry.name: entry.dtype for entry in container.tensors}
    return {name: value.astype(dtypes[name], copy=False) for name, value in out.items()}


def _skeleton(description: dict[str, Any], trusted_factory: str | None) -> tuple[ArchSpec, dict[str, Any]]:
    """The architecture a file describes, built on the meta device (no memory, no code from the file).

    Raises:
        BitstreamError: A user factory that was not trusted, or a description that does not build.
    """
    try:
        spec = ArchSpec.from_dict(description["arch"])
        table = description.get("layers", {})
    except (KeyError, TypeError, ValueError, NnslimError) as exc:
        raise BitstreamError(f"the file's architecture is malformed ({exc})") from None
    if spec.name not in REGISTRY and spec.name != trusted_factory:
        raise BitstreamError(
            f"the file's architecture is the user factory {spec.name!r}; nnslim runs no code a file names "
            "unless told to trust that factory"
        )
    try:
        with torch.device("meta"):
            skeleton = layers.apply(build(spec), table)
    except Exception as exc:  # a hostile table can make a layer constructor raise anything
        raise BitstreamError(f"the file's architecture cannot be built ({exc})") from None
    return spec, {name: tuple(value.shape) for name, value in skeleton.state_dict().items()}


def unpack(data: bytes, trusted_factory: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Decode `.nnsl` bytes into a runnable filter of the slim architecture, in eval mode.

    The architecture is first built without memory and its tensor shapes compared with the
    file's tensor table, so a hostile header cannot make nnslim allocate what the file does not hold.

    Args:
        data: The file's bytes.
        trusted_factory: A user architecture (``file.py:factory``) that may be built; files
            naming any other factory are refused, since building it runs its code.

    Returns:
        The model and its description (``arch``, ``layers``, ``training``, ``packing``), the
        shape of a filter file's JSON.

    Raises:
        BitstreamError: A corrupt file, an untrusted factory, or tensors that do not fit the architecture.
    """
    container = read(data)
    description = container.model
    spec, shapes = _skeleton(description, trusted_factory)
    stored = {e.name: e.shape for e in container.tensors if not e.name.endswith(SIDE)}
    if stored != shapes:
        wrong = sorted(set(stored.items()) ^ set(shapes.items()))[0][0]
        raise BitstreamError(f"the tensor table does not fit the architecture (first difference: {wrong!r})")
    tensors = decode_tensors(container)
    model = layers.apply(build(spec), description.get("layers", {}))
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
    if entry.coder == "nnr" and "qp" in entry.params:
        return np.rint(values / nnr.step_size(int(entry.params["qp"]))).astype(np.int64)
    return values


def summary(data: bytes) -> dict[str, Any]:
    """What a file holds: its description, chunks, and per tensor the real bytes beside an entropy estimate.

    The estimate is the zeroth-order entropy of what the coder codes (NNR quantization levels,
    shared-weight values, or raw values at their stored width), which context-adaptive coding
    (DeepCABAC) can beat. A chunk shared by several tensors (one NNR bitstream) is listed once.

    Raises:
        BitstreamError: A corrupt file.
    """
    container = read(data)
    tensors = decode_tensors(container)
    rows: list[dict[str, Any]] = []
    for entry in container.tensors:
        values = tensors[entry.name]
        if entry.coder == "raw":
            estimate = 8.0 * np.dtype(RAW_TYPES[entry.params["stored"]]).itemsize * entry.elements
        else:
            estimate = _entropy_bits(_symbols(entry, values))
        row: dict[str, Any] = {
            "name": entry.name,
            "shape": list(entry.shape),
            "coder": entry.coder,
            "chunk": entry.chunk,
            "params": entry.params,
            "entropy_bits": estimate,
            "nonzero": int(np.count_nonzero(values)),
        }
        if entry.coder == "huffman":
            row["compression_rate"] = huffman.compression_rate(entry.elements, int(entry.params["clusters"]))
        rows.append(row)
    chunks = [
        {"index": i, "bytes": len(chunk), "tensors": [e.name for e in container.tensors if e.chunk == i]}
        for i, chunk in enumerate(container.chunks)
    ]
    payload = sum(len(c) for c in container.chunks)
    return {
        "bytes": len(data),
        "payload_bytes": payload,
        "header_bytes": len(data) - payload,
        "model": container.model,
        "chunks": chunks,
        "tensors": rows,
        "entropy_bytes": sum(r["entropy_bits"] for r in rows) / 8.0,
    }
