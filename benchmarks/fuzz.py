"""Structure-aware fuzzing of `.nnsl` and `.nnsu` reading: mutants of small valid files with every CRC made right.

The base files are small filters packed with each coder (``nnr``, ``huffman``, ``raw``), a slim
(pruned and low-rank) one whose header carries a layer table, an in-loop filter, and two
content-adaptive updates (``.nnsu``) of the small ``nnr`` filter: multipliers with per-block
switch flags, and biases without a switch. Each case
takes one base, decodes its header, and applies one to three mutations: header fields (shapes,
counts, dtypes, coder names and parameters, architecture arguments, the layer table, the chunk
table's offsets and lengths), other architecture arguments with the tensor table's shapes made
to fit them (so that the payloads no longer do), JSON nesting, chunk payloads (truncated,
extended, bytes flipped, NNR unit headers and Huffman payload headers edited), the compressed
header or the preamble.
Then it recomputes every CRC (header, chunks in the table, file), so that mutants reach the parsers.

Every case runs ``inspect`` (``summary``, with and without decoding), ``unpack`` and the update
reader (``adapt.update.decode`` against the small filter) from Python, and a sample
(``--cli-every``) also runs ``nnslim inspect``, ``nnslim unpack`` and ``nnslim filter --update``
(the small filter on a two-frame 128x64 video) through
``nnslim.cli.main`` in-process, which must exit 0 or exit 2 with one line naming the file and
write no output folder on failure. Outcomes: ``ok``, ``refused`` (an NnslimError of one line),
``traceback`` (any other exception, or a refusal of several lines), ``timeout`` (the case ran
over ``--seconds-per-case``), ``memory`` (MemoryError under the worker's address-space limit, or
the worker killed) and ``crash`` (the worker died of another signal). Workers take batches of
cases and are replaced when they die or overrun, so imports are paid once per worker.

Prints the counts and writes JSON (counts, seconds, settings, and each failing case with its
mutations and, when small, the file in base64):

    .venv/bin/python benchmarks/fuzz.py --cases 10000 --workers 1 --json benchmarks/results/fuzz.json
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import io
import json
import multiprocessing
import os
import random
import resource
import shutil
import struct
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter, deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.table import Table

from nnslim.io import atomic_write_json

OUTCOMES = ("ok", "refused", "traceback", "timeout", "memory", "crash")
FAILURES = ("traceback", "timeout", "memory", "crash")
TARGETS = ("inspect", "inspect --decode", "unpack", "update", "cli inspect", "cli unpack", "cli filter --update")
BATCH = 50
MAX_ATTACHED_BYTES = 64 << 10
UPDATE_BASE = "postfilter nnr"
"""The base file the updates are made for."""
UPDATE_VIDEO = (2, 64, 128)
"""Frames, height and width of the video the updates are made for."""
INTS = [0, 1, -1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 255, 256, 1023, 1024, 1025, 1500, 4096, 4097]
INTS += [15000, 65535, 65536, 2**20, 3_000_000, 2**26, 64 * 2**20, 64 * 2**20 + 1, 2**31, 2**32, 2**63, 10**30]
STRINGS = ["", "float32", "float16", "int64", "int32", "object", "raw", "nnr", "huffman", "zip", "postfilter"]
STRINGS += ["vrcnn", "inloop", "x.py:f", "os:system", "Conv2d", "SeparableConv2d", "Linear", "BatchNorm2d", "PReLU"]
STRINGS += ["Sequential", "same", "valid", "reflect", "body.0", "body.0.weight", "training", "#codebook", "[/x]"]
STRINGS += ["a\nb", "é", "a" * 600]
NEST = "@@nest@@"


# --- base files and file surgery ---------------------------------------------------------------


def base_files() -> dict[str, bytes]:
    """Small valid files: every coder, a slim filter with a layer table, an in-loop filter and two updates."""
    import numpy as np
    from torch import nn

    from nnslim.adapt import params, update
    from nnslim.bitstream.pack import PackConfig, pack
    from nnslim.models import layers
    from nnslim.models.filters import ArchSpec, build

    spec = ArchSpec("postfilter", {"channels": 8, "layers": 3})
    model = build(spec)
    meta = {"arch": spec.to_dict(), "layers": {}, "training": {"codec": "x265", "qps": [37]}}
    files = {f"postfilter {coder}": pack(model, meta, PackConfig(coder)) for coder in ("nnr", "huffman", "raw")}
    body = cast(nn.Sequential, model.body)
    body[0] = nn.Conv2d(1, 6, 3, padding=1)
    body[2] = layers.SeparableConv2d(6, 3, 8, 3, 1, True)
    slim = {**meta, "layers": layers.changed(model, build(spec))}
    files["slim nnr lossless"] = pack(model, slim, PackConfig("nnr", lossless=True, coders={"body.0.bias": "raw"}))
    files["slim huffman"] = pack(model, slim, PackConfig("huffman", bits=3))
    inloop = ArchSpec("inloop", {"channels": 8, "blocks": 1})
    files["inloop nnr"] = pack(build(inloop), {"arch": inloop.to_dict(), "layers": {}}, PackConfig("nnr"))
    base, sha = build(spec), hashlib.sha256(files[UPDATE_BASE]).hexdigest()
    frames, height, width = UPDATE_VIDEO
    values = np.random.default_rng(0).normal(0, 0.05, params.size(base, "multipliers")).astype(np.float32)
    flags = np.array([[[True, False]], [[False, True]]])
    made = update.Update(sha, "Tiny", "x265", 37, "multipliers", values, -24, 64, flags, width, height, frames)
    files["update multipliers blocks"] = update.encode(made)
    biases = values[: params.size(base, "biases")]
    made = update.Update(sha, "Tiny", "x265", 37, "biases", biases, -16, None, None, width, height, frames)
    files["update biases"] = update.encode(made)
    return files


def split(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """The header JSON (chunk table included) and the chunks of a valid file."""
    (length,) = struct.unpack_from("<I", data, 12)
    header = json.loads(zlib.decompress(data[16 : 16 + length]))
    payload = data[16 + length + 4 : -4]
    return header, [payload[c["offset"] : c["offset"] + c["length"]] for c in header["chunks"]]


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a list (none when it is no list): the parts of a header that earlier mutations left whole."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _with_nesting(text: bytes, depth: int) -> bytes:
    return text.replace(json.dumps(NEST).encode(), b"[" * depth + b"0" + b"]" * depth, 1)


def assemble(header: dict[str, Any], chunks: list[bytes], keep_table: bool = False, depth: int = 0) -> bytes:
    """A file of this header and these chunks, every CRC made right.

    The chunk table is rebuilt from the chunks, unless ``keep_table``: then the header's own
    (edited) table stays, with each entry's CRC computed over the bytes it points at.
    """
    payload = b"".join(chunks)
    if keep_table:
        for entry in _dicts(header.get("chunks")):
            offset, length = entry.get("offset"), entry.get("length")
            if type(offset) is int and type(length) is int and min(offset, length) >= 0:
                entry["crc32"] = zlib.crc32(payload[offset : offset + length])
    else:
        table, offset = [], 0
        for chunk in chunks:
            table.append({"offset": offset, "length": len(chunk), "crc32": zlib.crc32(chunk)})
            offset += len(chunk)
        header["chunks"] = table
    compressed = zlib.compress(_with_nesting(json.dumps(header).encode(), depth))
    return _seal(compressed, payload)


def _seal(compressed: bytes, payload: bytes, length: int | None = None, version: int = 1) -> bytes:
    preamble = b"\x8bNNSL\r\n\x1a" + struct.pack("<HHI", version, 0, len(compressed) if length is None else length)
    body = preamble + compressed + struct.pack("<I", zlib.crc32(compressed)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


# --- mutations ---------------------------------------------------------------------------------


def _value(rng: random.Random, current: Any) -> Any:
    """A value to put where ``current`` was: a near or extreme one of its type, or one of another type."""
    if rng.random() < 0.15:
        return rng.choice([None, True, 0, -1, 2**31, 1.5, "", "x", [], {}, [0] * 9, {"a": 1}])
    if isinstance(current, bool):
        return not current
    if isinstance(current, int):
        return rng.choice([rng.choice(INTS), current + rng.choice([-1, 1]), current * 2, -current, rng.getrandbits(64)])
    if isinstance(current, float):
        return rng.choice([0.0, -1.0, 1e308, current * 10, int(current)])
    if isinstance(current, str):
        return rng.choice([rng.choice(STRINGS), current + "x", current[::-1], current * 50])
    if isinstance(current, list):
        choices: list[Callable[[], Any]] = [
            lambda: [],
            lambda: current[:-1],
            lambda: current[::-1],
            lambda: [*current, copy.deepcopy(current[-1]) if current else 1],
            lambda: [rng.choice(INTS) for _ in range(rng.randint(1, 9))],
        ]
        return rng.choice(choices)()
    if isinstance(current, dict):
        edited = copy.deepcopy(current)
        if edited and rng.random() < 0.5:
            del edited[rng.choice(list(edited))]
        else:
            edited[rng.choice([*STRINGS[:12], "qp", "stored", "clusters", "codebook", "channels", "layers"])] = _value(
                rng, rng.choice([0, "x", 1.0])
            )
        return edited
    return rng.choice([0, "x", {}, []])


def json_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value (the value itself excluded), as a path of keys and indices."""
    inner: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        inner = [p for key, item in value.items() for p in json_paths(item, (*path, key))]
    elif isinstance(value, list):
        inner = [p for i, item in enumerate(value) for p in json_paths(item, (*path, i))]
    return [path, *inner] if path else inner


def _parent(header: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = header
    for step in path[:-1]:
        node = node[step]
    return node


def _edit_field(rng: random.Random, header: dict[str, Any], region: str) -> str:
    """Replace, delete or duplicate one value of the header, in ``region`` (a top-level key path prefix)."""
    prefix = tuple(region.split("/")) if region else ()
    paths = [p for p in json_paths(header) if p[: len(prefix)] == prefix] or json_paths(header)
    if not paths:
        return "no field left to edit"
    path = rng.choice(paths)
    parent, key = _parent(header, path), path[-1]
    action = rng.choices(["replace", "delete", "duplicate"], [6, 1, 1])[0]
    if action == "replace":
        parent[key] = _value(rng, parent[key])
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:
        parent[f"{key}2"] = copy.deepcopy(parent[key])
    return f"{action} {'/'.join(map(str, path))}"


def _layer_entry(rng: random.Random, header: dict[str, Any]) -> str:
    """Add or change a layer-table entry: a real layer's description, one field pushed out of shape."""
    from torch import nn

    from nnslim.models import layers

    choices = [nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(1, 8, 3), nn.Linear(8, 4), nn.BatchNorm2d(8), nn.PReLU(8)]
    choices.append(layers.SeparableConv2d(8, 2, 8, 3, 1, True))
    spec = layers.describe(rng.choice(choices)) or {}
    if rng.random() < 0.7:
        key = rng.choice(list(spec))
        spec[key] = _value(rng, spec[key])
    names = [t["name"].rpartition(".")[0] for t in _dicts(header.get("tensors")) if isinstance(t.get("name"), str)]
    name = rng.choice([*names, "training", "", "body", "body.0.weight", "x.y"])
    model = header["model"]
    if not isinstance(model.get("layers"), dict):
        model["layers"] = {}
    model["layers"][name] = spec
    return f"layer {name!r} = {spec}"


def _arch(rng: random.Random, header: dict[str, Any]) -> str:
    arch = header["model"].setdefault("arch", {})
    if not isinstance(arch, dict):
        return "arch is not an object"
    if rng.random() < 0.2:
        arch["name"] = rng.choice(["postfilter", "vrcnn", "inloop", "x.py:f", "nnslim.models.filters:build", ""])
        return f"arch name {arch['name']!r}"
    kwargs = arch.setdefault("kwargs", {})
    if not isinstance(kwargs, dict):
        return "arch kwargs are not an object"
    key = rng.choice(["channels", "layers", "blocks", "shuffle", "qp_input", "device"])
    kwargs[key] = _value(rng, kwargs.get(key, rng.choice([8, True])))
    return f"arch {key} = {kwargs[key]!r}"[:200]


def _retarget(rng: random.Random, header: dict[str, Any]) -> str:
    """New small architecture arguments, and the tensor table's shapes made to fit them (the payloads stay)."""
    import torch

    from nnslim.errors import NnslimError
    from nnslim.models import layers
    from nnslim.models.filters import ArchSpec, build

    model = header["model"]
    arch = model.get("arch")
    if not isinstance(arch, dict) or arch.get("name") not in ("postfilter", "inloop"):
        return "no architecture to retarget"
    if arch["name"] == "postfilter":
        kwargs = {"channels": rng.randint(1, 16), "layers": rng.randint(1, 5)}
    else:
        kwargs = {"channels": rng.randint(4, 16), "blocks": rng.randint(0, 2)}
    arch["kwargs"] = kwargs
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an earlier mutation may have left zero-sized layers in the table
            skeleton = layers.apply(build(ArchSpec(arch["name"], kwargs)), model.get("layers", {}))
    except (NnslimError, TypeError, ValueError, RuntimeError, AttributeError):
        return f"retarget to {kwargs} (does not build)"
    shapes = {name: list(value.shape) for name, value in skeleton.state_dict().items()}
    for tensor in _dicts(header.get("tensors")):
        if isinstance(name := tensor.get("name"), str) and name in shapes:
            tensor["shape"] = shapes[name]
    return f"retarget to {kwargs}"


def _nnr_unit(rng: random.Random, chunk: bytearray) -> str:
    """Flip a bit in an NNR unit's header (its first bytes), walking the units by their sizes."""
    starts, position = [], 0
    while position + 2 <= len(chunk):
        starts.append(position)
        long = chunk[position] >> 7
        if long and position + 4 > len(chunk):
            break
        size = int.from_bytes(chunk[position : position + (4 if long else 2)], "big") & (0x7FFFFFFF if long else 0x7FFF)
        position += max(size, 1)
    start = rng.choice(starts or [0])
    at = min(start + rng.randrange(32), len(chunk) - 1)
    chunk[at] ^= 1 << rng.randrange(8)
    return f"nnr unit at {start}: flip byte {at}"


def _huffman_head(rng: random.Random, chunk: bytearray) -> str:
    fields = struct.unpack_from("<BIII", chunk) if len(chunk) >= 13 else (8, 0, 0, 0)
    index = rng.randrange(4)
    value = rng.choice([0, 1, 16, 17, 255, 2**16, 2**31, 2**32 - 1, fields[index] + 1, fields[index] * 2])
    edited = list(fields)
    edited[index] = value % (256 if index == 0 else 2**32)
    chunk[:13] = struct.pack("<BIII", *edited)
    return f"huffman head field {index} = {edited[index]}"


def _payload(rng: random.Random, header: dict[str, Any], chunks: list[bytes]) -> str:
    if not chunks:
        return "no chunk to edit"
    index = rng.randrange(len(chunks))
    chunk = bytearray(chunks[index])
    tensors = _dicts(header.get("tensors"))
    coders = {str(t.get("coder")) for t in tensors if t.get("chunk") == index and isinstance(t.get("coder"), str)}
    action = rng.choice(["truncate", "extend", "flip", "flip", "structure", "swap"])
    if action == "truncate":
        del chunk[rng.randrange(len(chunk) + 1) :]
    elif action == "extend":
        chunk += rng.choice([bytes(1), rng.randbytes(8), bytes(1 << 20), b"\xff" * (4 << 20), rng.randbytes(4096)])
    elif action == "flip":
        for _ in range(rng.randint(1, 8)):
            if chunk:
                chunk[rng.randrange(len(chunk))] ^= 1 << rng.randrange(8)
    elif action == "swap":
        other = rng.randrange(len(chunks))
        chunks[index], chunks[other] = chunks[other], chunks[index]
        return f"swap chunks {index} and {other}"
    elif "nnr" in coders and chunk:
        action = _nnr_unit(rng, chunk)
    elif "huffman" in coders:
        action = _huffman_head(rng, chunk)
    chunks[index] = bytes(chunk)
    return f"chunk {index} ({', '.join(sorted(coders))}): {action}"


def mutant(bases: dict[str, bytes], seed: int, case: int) -> tuple[str, bytes]:
    """The mutant file of a case, the same for the same seed and case: a description and the bytes."""
    rng = random.Random(seed * 1_000_003 + case)
    name = rng.choice(sorted(bases))
    header, chunks = split(bases[name])
    done, keep_table, depth, tail = [f"base {name!r}"], False, 0, ""
    for _ in range(rng.choice([1, 1, 2, 3])):
        kind = rng.choices(
            [
                "tensors",
                "arch",
                "retarget",
                "layers",
                "model",
                "chunks",
                "field",
                "payload",
                "nest",
                "zlib",
                "preamble",
            ],
            [18, 8, 8, 9, 5, 6, 5, 25, 4, 3, 2],
        )[0]
        if kind in ("tensors", "model", "field"):
            done.append(_edit_field(rng, header, "" if kind == "field" else kind))
        elif kind == "chunks":
            done.append(_edit_field(rng, header, "chunks"))
            keep_table = True
        elif kind == "arch" and isinstance(header.get("model"), dict):
            done.append(_arch(rng, header))
        elif kind == "retarget" and isinstance(header.get("model"), dict):
            done.append(_retarget(rng, header))
        elif kind == "layers" and isinstance(header.get("model"), dict):
            done.append(_layer_entry(rng, header))
        elif kind == "payload":
            done.append(_payload(rng, header, chunks))
        elif kind == "nest" and json_paths(header):
            path = rng.choice(json_paths(header))
            _parent(header, path)[path[-1]] = NEST
            depth = rng.choice([31, 32, 33, 100, 100_000])
            done.append(f"nest {'/'.join(map(str, path))} {depth} deep")
        elif kind in ("zlib", "preamble"):
            tail = kind
    data = assemble(header, chunks, keep_table, depth)
    if tail:
        done.append(tail)
        data = _raw_edit(rng, data, tail)
    return "; ".join(done), data


def _raw_edit(rng: random.Random, data: bytes, kind: str) -> bytes:
    """Flip bytes of the compressed header, or change the preamble's version or header length; CRCs made right."""
    (length,) = struct.unpack_from("<I", data, 12)
    compressed, payload = bytearray(data[16 : 16 + length]), data[16 + length + 4 : -4]
    if kind == "zlib":
        for _ in range(rng.randint(1, 4)):
            compressed[rng.randrange(len(compressed))] ^= 1 << rng.randrange(8)
        return _seal(bytes(compressed), payload)
    if rng.random() < 0.5:
        return _seal(bytes(compressed), payload, version=rng.choice([0, 2, 65535]))
    return _seal(bytes(compressed), payload, length=rng.choice([0, length - 1, length + 1, 2**32 - 1]))


# --- one case, in a worker ---------------------------------------------------------------------


def _one_line_refusal(exc: BaseException) -> bool:
    return "\n" not in str(exc)


def _call(run: Callable[[], Any]) -> tuple[str, str]:
    """Outcome and detail of one target."""
    from nnslim.errors import NnslimError

    try:
        run()
    except NnslimError as exc:
        return ("refused", "") if _one_line_refusal(exc) else ("traceback", f"refusal of several lines: {exc!r}")
    except MemoryError:
        return "memory", traceback.format_exc(limit=-8)
    except Exception:
        return "traceback", traceback.format_exc(limit=-8)
    return "ok", ""


def _cli(argv: list[str], path: Path, out: Path | None) -> tuple[str, str]:
    """Outcome of a command run in-process: exit 0, or exit 2 with one line naming the file and no output."""
    from nnslim.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
    except MemoryError:
        return "memory", traceback.format_exc(limit=-8)
    except Exception:  # main turns every refusal into exit 2: anything else escaping it is a bug
        return "traceback", traceback.format_exc(limit=-8)
    text = err.getvalue()
    if code == 0:
        return "ok", ""
    one_line = code == 2 and text.count("\n") == 1 and text.startswith(f"nnslim: error: {path}: ")
    left = out is not None and out.exists()
    if not one_line or left:
        return "traceback", f"exit {code}, output left: {left}, stderr: {text[-2000:]!r}"
    return "refused", ""


Setting = tuple[Any, str, Path, Path]
"""What updates are read against: the base filter, its file's SHA-256, that file, and a decoded video."""


def update_setting(bases: dict[str, bytes], folder: Path) -> Setting:
    """The ``Setting`` of the updates, with its base filter and video written to ``folder``."""
    import numpy as np

    from nnslim.bitstream.pack import unpack

    base_file, video = folder / "base.nnsl", folder / "decoded.yuv"
    base_file.write_bytes(bases[UPDATE_BASE])
    frames, height, width = UPDATE_VIDEO
    planes = np.random.default_rng(0).integers(0, 256, frames * height * width * 3 // 2, dtype=np.uint8)
    video.write_bytes(planes.tobytes())
    return unpack(bases[UPDATE_BASE])[0], hashlib.sha256(bases[UPDATE_BASE]).hexdigest(), base_file, video


def run_case(data: bytes, with_cli: bool, folder: Path, setting: Setting) -> dict[str, tuple[str, str]]:
    """Outcome and detail per target of one mutant file (``setting``: ``update_setting``'s)."""
    from nnslim.adapt.update import decode
    from nnslim.bitstream.pack import summary, unpack

    base, sha, base_file, video = setting
    results = {
        "inspect": _call(lambda: summary(data)),
        "inspect --decode": _call(lambda: summary(data, decode=True)),
        "unpack": _call(lambda: unpack(data)),
        "update": _call(lambda: decode(data, base, sha)),
    }
    if with_cli:
        path, out, filtered = folder / "case.nnsl", folder / "out", folder / "filtered.yuv"
        path.write_bytes(data)
        results["cli inspect"] = _cli(["inspect", str(path)], path, None)
        results["cli unpack"] = _cli(["unpack", str(path), "--out", str(out)], path, out)
        shutil.rmtree(out, ignore_errors=True)
        size = f"{UPDATE_VIDEO[2]}x{UPDATE_VIDEO[1]}"
        argv = ["filter", str(base_file), "--update", str(path), "--input", str(video), "--size", size,
                "--qp", "37", "--out", str(filtered)]  # fmt: skip
        results["cli filter --update"] = _cli(argv, path, filtered)
        filtered.unlink(missing_ok=True)
    return results


def _worker(conn: Connection, bases: dict[str, bytes], seed: int, memory_mib: int, cli_every: int) -> None:
    """Run the cases the parent sends, one result each; the address space is limited first."""
    limit = memory_mib << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(1)
    from nnslim import cli
    from nnslim.bitstream import pack

    assert callable(cli.main) and callable(pack.unpack)  # imported before the first case's clock starts
    with tempfile.TemporaryDirectory(prefix="nnsl-fuzz-") as tmp:
        setting = update_setting(bases, Path(tmp))
        conn.send(("ready",))
        while (batch := conn.recv()) is not None:
            for case in batch:
                start = time.perf_counter()
                try:
                    _, data = mutant(bases, seed, case)
                except Exception:  # a bug of this fuzzer, reported as a failure rather than a dead worker
                    results = {"fuzzer": ("traceback", traceback.format_exc(limit=-8))}
                else:
                    results = run_case(data, cli_every > 0 and case % cli_every == 0, Path(tmp), setting)
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
                conn.send(("done", case, results, time.perf_counter() - start, rss))


# --- the parent --------------------------------------------------------------------------------


class Pool:
    """Workers, each with a batch of cases; a worker that dies or overruns its case is replaced."""

    def __init__(self, args: argparse.Namespace, bases: dict[str, bytes]) -> None:
        self.args, self.bases = args, bases
        self.context = multiprocessing.get_context("spawn")
        self.queue: deque[int] = deque(range(args.cases))
        self.workers: dict[Connection, tuple[Any, deque[int], float]] = {}
        self.results: dict[int, dict[str, tuple[str, str]]] = {}
        self.seconds: dict[int, float] = {}
        self.peak_rss_mib = 0
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.context.Pipe()
        args = (child, self.bases, self.args.seed, self.args.memory_mib, self.args.cli_every)
        process = self.context.Process(target=_worker, args=args, daemon=True)
        process.start()
        child.close()
        if not parent.poll(120) or parent.recv() != ("ready",):
            raise RuntimeError("a fuzzing worker did not start")
        self.workers[parent] = (process, deque(), time.monotonic())
        self._feed(parent)

    def _feed(self, conn: Connection) -> None:
        process, pending, _ = self.workers[conn]
        if not pending and self.queue:
            pending.extend(self.queue.popleft() for _ in range(min(BATCH, len(self.queue))))
            conn.send(list(pending))
        self.workers[conn] = (process, pending, time.monotonic())

    def _fail(self, conn: Connection, outcome: str, detail: str) -> None:
        """Record the worker's case as failed, put back the rest of its batch, and replace it."""
        process, pending, _ = self.workers.pop(conn)
        process.kill()
        process.join()
        conn.close()
        self.results[pending.popleft()] = {"worker": (outcome, detail)}
        self.queue.extendleft(reversed(pending))
        self.restarts += 1
        if self.queue:
            self._start()

    def _receive(self, conn: Connection, progress: Callable[[int], None]) -> None:
        """Take a worker's result and give it the next case, or replace it if it died."""
        try:
            _, case, results, seconds, rss = conn.recv()
        except EOFError:
            process = self.workers[conn][0]
            process.join()
            code = process.exitcode or 0
            self._fail(conn, "memory" if code == -9 else "crash", f"the worker died (exit {code})")
            return
        process, pending, _ = self.workers[conn]
        pending.popleft()
        self.results[case], self.seconds[case] = results, seconds
        self.peak_rss_mib = max(self.peak_rss_mib, rss)
        progress(len(self.results))
        if pending or self.queue:
            self._feed(conn)
        else:
            conn.send(None)
            self.workers.pop(conn)
            process.join()

    def run(self, progress: Callable[[int], None]) -> None:
        for _ in range(min(self.args.workers, max(1, self.args.cases))):
            self._start()
        while self.workers:
            now = time.monotonic()
            deadline = min(started + self.args.seconds_per_case for _, _, started in self.workers.values())
            ready = wait(list(self.workers), timeout=max(0.0, deadline - now))
            for conn in [c for c in list(self.workers) if c in ready]:
                self._receive(conn, progress)
            for conn, (_, pending, started) in list(self.workers.items()):
                if pending and time.monotonic() - started > self.args.seconds_per_case:
                    self._fail(conn, "timeout", f"over {self.args.seconds_per_case} s")


def worst(results: dict[str, tuple[str, str]]) -> str:
    """A case's outcome: its worst target's (a failure, then refused, then ok)."""
    outcomes = {outcome for outcome, _ in results.values()}
    return next(o for o in (*FAILURES, "refused", "ok") if o in outcomes)


def _failure(bases: dict[str, bytes], seed: int, case: int, results: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A failing case as the JSON keeps it: its mutations, failing targets, and the file when small."""
    failure: dict[str, Any] = {
        "case": case,
        "outcomes": {t: {"outcome": o, "detail": d} for t, (o, d) in results.items() if o in FAILURES},
    }
    if "fuzzer" in results:
        return failure | {"mutations": "the fuzzer could not make this mutant"}
    description, data = mutant(bases, seed, case)
    failure |= {"mutations": description, "bytes": len(data)}
    if len(data) <= MAX_ATTACHED_BYTES:
        failure["file_base64"] = base64.b64encode(data).decode()
    return failure


def report(pool: Pool, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """The counts by outcome (per case and per target), settings, and every failing case."""
    per_case = Counter(worst(r) for r in pool.results.values())
    per_target = {t: Counter(r[t][0] for r in pool.results.values() if t in r) for t in TARGETS}
    failures = [
        _failure(pool.bases, args.seed, case, results)
        for case, results in sorted(pool.results.items())
        if worst(results) in FAILURES
    ]
    times = sorted(pool.seconds.values())
    return {
        "cases": len(pool.results),
        "seconds": seconds,
        "counts": {o: per_case.get(o, 0) for o in OUTCOMES},
        "counts_by_target": {t: {o: c.get(o, 0) for o in OUTCOMES} for t, c in per_target.items()},
        "case_seconds": {"median": times[len(times) // 2] if times else None, "max": times[-1] if times else None},
        "peak_worker_rss_mib": pool.peak_rss_mib,
        "worker_restarts": pool.restarts,
        "settings": {
            "cases": args.cases,
            "workers": args.workers,
            "seconds_per_case": args.seconds_per_case,
            "memory_mib": args.memory_mib,
            "seed": args.seed,
            "cli_every": args.cli_every,
            "bases": {name: len(data) for name, data in pool.bases.items()},
        },
        "failures": failures,
    }


def _print(result: dict[str, Any], console: Console) -> None:
    table = Table(title=f"{result['cases']:,} mutants in {result['seconds']:.0f} s")
    table.add_column("outcome")
    table.add_column("cases", justify="right")
    for target in TARGETS:
        table.add_column(target, justify="right")
    for outcome in OUTCOMES:
        per_target = [f"{result['counts_by_target'][t][outcome]:,}" for t in TARGETS]
        table.add_row(outcome, f"{result['counts'][outcome]:,}", *per_target)
    console.print(table)
    for failure in result["failures"][:10]:
        console.print(f"case {failure['case']}: {failure['mutations']}", markup=False)
        for target, what in failure["outcomes"].items():
            console.print(f"  {target}: {what['outcome']}: {what['detail'].strip()[-600:]}", markup=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="mutants to run")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="worker processes")
    parser.add_argument("--seconds-per-case", type=float, default=10.0, help="wall time of one case before a kill")
    parser.add_argument("--memory-mib", type=int, default=2048, help="address space of a worker (RLIMIT_AS)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (same seed, same mutants)")
    parser.add_argument("--cli-every", type=int, default=20, help="also run the CLI on every Nth case (0: never)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/fuzz.json"), help="results file")
    args = parser.parse_args()
    console = Console()
    bases = base_files()
    pool = Pool(args, bases)
    start = time.perf_counter()
    with console.status("fuzzing") as status:
        pool.run(lambda done: status.update(f"fuzzing: {done:,} of {args.cases:,} cases") if done % 50 == 0 else None)
    result = report(pool, args, time.perf_counter() - start)
    _print(result, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.json, result)
    console.print(f"JSON written to {args.json}")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
