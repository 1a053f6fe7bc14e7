"""Hostile `.nnsl` files (issue 15): valid CRCs, sizes that would cost time or memory, one line each."""

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nnslim.bitstream import huffman, nnr
from nnslim.bitstream.container import BitstreamError, Limits, json_depth
from nnslim.bitstream.pack import DEFAULT_MAX_PARAMS, PackConfig, pack, summary, unpack
from nnslim.cli import main
from nnslim.models.filters import ArchSpec, build
from tests.bitstream.forge import forge, parts

SPEC = ArchSpec("postfilter", {"channels": 8, "layers": 3})


def _packed(coder: str, spec: ArchSpec = SPEC) -> bytes:
    model = build(spec)
    return pack(model, {"arch": spec.to_dict(), "layers": {}}, PackConfig(coder))


def _huffman_file() -> tuple[dict[str, Any], list[bytes]]:
    return parts(_packed("huffman"))


def _nested() -> bytes:
    header, chunks = _huffman_file()
    header["model"]["deep"] = 0
    return forge(header, chunks, nest=100_000)


def _without_arch() -> bytes:
    header, chunks = _huffman_file()
    del header["model"]["arch"]
    return forge(header, chunks)


def _huge_huffman_tensor() -> bytes:
    header, chunks = _huffman_file()
    header["tensors"][0]["shape"] = [2**31]
    return forge(header, chunks)


def _arch(**kwargs: int) -> bytes:
    header, chunks = _huffman_file()
    header["model"]["arch"]["kwargs"] |= kwargs
    return forge(header, chunks)


def _wide_filter_of_zeros() -> bytes:
    """postfilter with 1500 channels and 7 layers, every weight an all-zero Huffman tensor: 101M parameters, 1 kB."""
    spec = ArchSpec("postfilter", {"channels": 1500, "layers": 7})
    with torch.device("meta"):
        shapes = {name: list(value.shape) for name, value in build(spec).state_dict().items()}
    zeros = huffman.encode(np.zeros(4, np.float32))
    params = {"index_bits": 8, "clusters": 0}
    tensors = [
        {"name": name, "shape": shape, "dtype": "float32", "coder": "huffman", "chunk": i, "params": params}
        for i, (name, shape) in enumerate(shapes.items())
    ]
    return forge({"model": {"arch": spec.to_dict(), "layers": {}}, "tensors": tensors}, [zeros] * len(tensors))


def _long_huffman_stream() -> bytes:
    header, chunks = _huffman_file()
    chunks[header["tensors"][0]["chunk"]] += bytes(4 << 20)
    return forge(header, chunks)


HOSTILE = {
    "nested": (_nested, "nested deeper than the limit of 32"),
    "no_arch": (_without_arch, "missing or malformed 'arch'"),
    "huffman_2**31": (
        _huge_huffman_tensor,
        r"shape \[2147483648\] is more than a filter holds \(the limit is 67108864",
    ),
    "channels_15000": (lambda: _arch(channels=15000), "channels must be an integer from 1 to 4096, not 15000"),
    "channels_1500": (_wide_filter_of_zeros, "limit of 67108864 parameters"),
    "layers_3M": (lambda: _arch(layers=3_000_000), "layers must be an integer from 1 to 1024, not 3000000"),
    "huffman_4MiB": (_long_huffman_stream, r"4194\d+ bytes, where its tensors take 0 to \d+"),
}


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    start = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nnslim: error: {argv[1]}: "), err
    assert re.search(message, err), err


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_are_refused_in_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, message = HOSTILE[case]
    path = tmp_path / "hostile.nnsl"
    path.write_bytes(make())
    _refused(capsys, ["unpack", str(path), "--out", str(tmp_path / "out")], message)
    assert not (tmp_path / "out").exists()
    _refused(capsys, ["inspect", str(path)], message)
    _refused(capsys, ["inspect", str(path), "--decode"], message)


def test_max_params_allows_a_bigger_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.nnsl"
    path.write_bytes(_packed("raw", ArchSpec("postfilter", {"channels": 32, "layers": 3})))  # 9,857 parameters
    out = tmp_path / "out"
    _refused(capsys, ["unpack", str(path), "--out", str(out), "--max-params", "5000"], "the limit is 5000")
    assert not out.exists()
    _refused(capsys, ["inspect", str(path), "--max-params", "5000"], "the limit is 5000")
    assert main(["unpack", str(path), "--out", str(out), "--max-params", "10000"]) == 0
    assert (out / "slim.pt").is_file() and (out / "slim.json").is_file()
    assert main(["inspect", str(path), "--max-params", "10000"]) == 0
    with pytest.raises(BitstreamError, match="the limit is 5000"):
        unpack(path.read_bytes(), max_params=5000)
    assert main(["inspect", str(path), "--max-params", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err


def test_inspect_decodes_only_when_asked(tmp_path: Path) -> None:
    data = _packed("nnr")
    plain, decoded = summary(data), summary(data, decode=True)
    assert "entropy_bytes" not in plain and "nonzero" not in plain["tensors"][0]
    assert decoded["entropy_bytes"] > 0 and {r["name"] for r in decoded["tensors"]} == {
        r["name"] for r in plain["tensors"]
    }
    path = tmp_path / "f.nnsl"
    path.write_bytes(data)
    assert main(["inspect", str(path), "--decode", "--json", str(tmp_path / "i.json")]) == 0
    assert json.loads((tmp_path / "i.json").read_text())["entropy_bytes"] > 0


def test_depth_is_counted_without_parsing() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[{{"}]}', 32) == 3
    assert json_depth(b"[" * 10**6, 32) == 33


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h["tensors"].append(copy.deepcopy(h["tensors"][0])) or h, "names a tensor twice"),
        (lambda h: h["tensors"][1]["params"].update(stored="float64") or h, "stored as 'float64'"),
        (lambda h: h["tensors"][0]["params"].update(clusters="x") or h, "integer index_bits and clusters"),
        (lambda h: h["tensors"][0].update(coder="zip") or h, "unknown coder 'zip'"),
        (lambda h: h["tensors"][1].update(chunk=0) or h, "a chunk holds one raw or huffman tensor"),
        (lambda h: h["model"].update(layers={"body.0": {"type": "Conv2d"}}) or h, "lacks in_channels"),
        (lambda h: h["model"].update(layers={"training": {"type": "PReLU"}}) or h, "does not have"),
        (lambda h: h["model"]["arch"]["kwargs"].update(channels=8.0) or h, "channels must be an integer"),
        (lambda h: h["model"]["arch"]["kwargs"].update(device="cuda") or h, "no argument device"),
    ],
)
def test_inconsistent_tables_are_refused(edit: Any, message: str) -> None:
    header, chunks = _huffman_file()
    data = forge(edit(header), chunks)
    with pytest.raises(BitstreamError, match=message):
        unpack(data)


def test_nnr_headers_are_checked_before_nncodec_decodes() -> None:
    payload = nnr.encode({"w": np.ones((8, 1, 3, 3), np.float32), "b": np.ones(8, np.float32)}, -32, -48)
    assert nnr.scan(payload) == {"w": (8, 1, 3, 3), "b": (8,)}
    with pytest.raises(BitstreamError, match="over the limit of 10 parameters"):
        nnr.decode(payload, limits=Limits(max_params=10))
    with pytest.raises(BitstreamError, match="does not fit the tensor table"):
        nnr.decode(payload, {"w": 72})
    with pytest.raises(BitstreamError, match="unit"):
        nnr.decode(payload[:40] + payload[3:])
    assert DEFAULT_MAX_PARAMS == 64 * 2**20


def test_huffman_stream_length_is_checked_before_decoding() -> None:
    values = np.repeat(np.array([0, 1, 2, 0], np.float32), 64)
    payload = huffman.encode(values)
    assert np.array_equal(huffman.decode(payload, values.size), values)
    with pytest.raises(BitstreamError, match="cannot hold"):
        huffman.decode(payload + bytes(1 << 20), values.size)
    with pytest.raises(BitstreamError, match="entries for a tensor of 10 elements"):
        huffman.decode(payload, 10)
