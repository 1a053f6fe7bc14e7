"""Hypothesis over the header's fields and the payloads of valid files, every CRC made right:
every mutant either decodes or is refused with an NnslimError, never anything else."""

import contextlib
import copy
from functools import cache
from typing import Any

from benchmarks.fuzz import json_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from nnslim.bitstream.pack import PackConfig, pack, summary, unpack
from nnslim.errors import NnslimError
from nnslim.models import layers
from nnslim.models.filters import ArchSpec, build
from tests.bitstream.forge import forge, parts

SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INTERESTING = [0, 1, -1, 2, 3, 4, 7, 8, 16, 255, 256, 65535, 65536, 1500, 15000, 3_000_000, 2**31, 2**32, 2**63, 10**30]
LEAVES = (
    st.none()
    | st.booleans()
    | st.sampled_from(INTERESTING)
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["float32", "int64", "float16", "raw", "nnr", "huffman", "Conv2d", "same", "[/x]"])
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@cache
def bases() -> tuple[bytes, ...]:
    """Small valid files: each coder, a slim (pruned) filter with a layer table, and an in-loop filter."""
    spec = ArchSpec("postfilter", {"channels": 8, "layers": 3})
    model = build(spec)
    meta = {"arch": spec.to_dict(), "layers": {}}
    files = [pack(model, meta, PackConfig(coder)) for coder in ("nnr", "huffman", "raw")]
    model.body[0], model.body[2] = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
    slim = {**meta, "layers": layers.changed(model, build(spec))}
    files.append(pack(model, slim, PackConfig("nnr", lossless=True, coders={"body.0.bias": "raw"})))
    inloop = ArchSpec("inloop", {"channels": 8, "blocks": 1})
    files.append(pack(build(inloop), {"arch": inloop.to_dict(), "layers": {}}, PackConfig("huffman")))
    return tuple(files)


def _edit(header: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    """The header with the value at ``path`` replaced, deleted or duplicated (inside its list or object)."""
    if not path:
        return header
    *parent_path, key = path
    parent = header
    for step in parent_path:
        parent = parent[step]
    if action == "replace":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:
        parent[f"{key}_"] = copy.deepcopy(parent[key])
    return header


def _decodes_or_refuses(data: bytes) -> None:
    for load in (summary, lambda d: summary(d, decode=True), unpack):
        with contextlib.suppress(NnslimError):
            load(data)


@SETTINGS
@given(st.data())
def test_header_field_mutants_decode_or_refuse(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(bases()))
    header, chunks = parts(base)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([(), *json_paths(header)]))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "duplicate"]))
        header = _edit(header, path, action, data.draw(VALUES))
    _decodes_or_refuses(forge(header, chunks))


@SETTINGS
@given(st.data())
def test_payload_mutants_decode_or_refuse(data: st.DataObject) -> None:
    header, chunks = parts(data.draw(st.sampled_from(bases())))
    index = data.draw(st.integers(0, len(chunks) - 1))
    chunk = bytearray(chunks[index])
    action = data.draw(st.sampled_from(["truncate", "extend", "flip"]))
    if action == "truncate":
        del chunk[data.draw(st.integers(0, len(chunk))) :]
    elif action == "extend":
        chunk += data.draw(st.binary(min_size=1, max_size=64)) * data.draw(st.sampled_from([1, 100]))
    else:
        for at in data.draw(st.lists(st.integers(0, max(len(chunk) - 1, 0)), min_size=1, max_size=4)):
            if chunk:
                chunk[at] ^= 1 << data.draw(st.integers(0, 7))
    chunks[index] = bytes(chunk)
    _decodes_or_refuses(forge(header, chunks))


@settings(max_examples=20, deadline=None)
@given(st.integers(33, 200_000))
def test_deep_nesting_is_refused(depth: int) -> None:
    header, chunks = parts(bases()[2])
    header["model"]["deep"] = 0
    data = forge(header, chunks, nest=depth)
    for load in (summary, unpack):
        try:
            load(data)
        except NnslimError as exc:
            assert "nested deeper" in str(exc)
        else:
            raise AssertionError("a file nested too deep was read")
