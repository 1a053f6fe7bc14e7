"""File size, coding time and quality of a filter's compressed representations, in one run.

Measured on the test split (sequences up to ``--max-size``, every ``--frame-step``-th frame) at
the codec and QP the filter was trained for; every loss is the Y-PSNR of the decoded filter
against the *unpruned* original's, and every size a percentage of the unpruned filter's fp32
bytes:

- ``zip`` and ``lzma`` of the unpruned fp32 state dict: the floor every coder beats;
- ``nncodec``: NNCodec's NNR coding alone (its core, dependent quantization, the QP searched
  for the smallest bitstream within ``--max-loss``) on the unpruned filter, as NNCodec is used
  without pruning; its bytes are the bare NNR bitstream;
- ``nnslim nnr``: the slim filter in an ``.nnsl`` file with the ``nnr`` coder, QP searched the same way;
- ``nnslim huffman``: the slim filter with Deep Compression's coding, the fewest k-means bits within
  the budget.

Encode and decode seconds are the median of ``--repetitions`` runs (decode: to a runnable model).
Prints the table and writes benchmarks/results/bitstream.json.

    .venv/bin/python benchmarks/bitstream.py --slim out/full [--original models/postfilter_x265_qp37.pt]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import lzma
import statistics
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nnslim.bitstream import nnr
from nnslim.bitstream.pack import PackConfig, pack, unpack
from nnslim.bitstream.rate import search_qp
from nnslim.errors import NnslimError
from nnslim.io import atomic_write_json, require_writable_file
from nnslim.models import data
from nnslim.models.filters import parameter_count
from nnslim.models.train import load_filter, validate
from nnslim.video import content
from nnslim.video.yuv import parse_size

HUFFMAN_BITS = range(8, 1, -1)


def _seconds(run: Callable[[], object], repetitions: int) -> float:
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def _nncodec_model(template: nn.Module, payload: bytes) -> nn.Module:
    """The original architecture with the tensors NNCodec's decoder returns."""
    decoded = nnr.decode(payload)
    model = copy.deepcopy(template)
    shapes = {k: v.shape for k, v in template.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v.reshape(shapes[k])) for k, v in decoded.items()})
    return model.eval()


def _floor(name: str, model: nn.Module, repetitions: int) -> dict[str, Any]:
    """zip (deflate) or lzma of the fp32 state dict, as one .npz-like blob of little-endian floats."""
    blob = b"".join(v.astype("<f4").tobytes() for v in _state_arrays(model).values())

    def encode() -> bytes:
        if name == "lzma":
            return lzma.compress(blob, preset=9)
        sink = io.BytesIO()
        with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            archive.writestr("weights.bin", blob)
        return sink.getvalue()

    packed = encode()

    def decode() -> bytes:
        if name == "lzma":
            return lzma.decompress(packed)
        with zipfile.ZipFile(io.BytesIO(packed)) as archive:
            return archive.read("weights.bin")

    return {
        "method": f"{name} of fp32 (unpruned)",
        "bytes": len(packed),
        "encode_s": _seconds(encode, repetitions),
        "decode_s": _seconds(decode, repetitions),
        "loss_db": 0.0,
    }


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    original, original_meta = load_filter(args.original)
    slim, slim_meta = load_filter(args.slim / "slim.pt" if args.slim.is_dir() else args.slim)
    training = original_meta["training"]
    manifest = content.load_manifest(args.sequences)
    test = list(content.select(manifest, "test", None, parse_size(args.max_size)))
    with console.status("encoding the test sequences"):
        pairs = data.encode_pairs(test, training["codec"], tuple(training["qps"]), content.cache_dir() / "encodes")

    def psnr(model: nn.Module) -> float:
        return validate(model, pairs, frame_step=args.frame_step)["psnr_y_filtered"]

    reference = psnr(original)
    rows = [_floor("zip", original, args.repetitions), _floor("lzma", original, args.repetitions)]
    say = console.status("searching")
    with say:
        arrays = _state_arrays(original)
        nncodec_settings = {"nonweight_qp": args.nonweight_qp, "dependent": True}
        payload, trials = search_qp(
            lambda qp: nnr.encode(arrays, qp, **nncodec_settings),
            lambda p: _nncodec_model(original, p),
            psnr,
            reference,
            args.max_loss,
            on_trial=lambda t: say.update(f"NNCodec alone, QP {t['qp']}: loss {t['loss_db']:+.3f} dB"),
        )
        qp = max(t["qp"] for t in trials if t["within"])
        rows.append(
            {
                "method": "NNCodec alone (unpruned, dependent quantization)",
                "bytes": len(payload),
                "qp": qp,
                "encode_s": _seconds(lambda: nnr.encode(arrays, qp, **nncodec_settings), args.repetitions),
                "decode_s": _seconds(lambda: _nncodec_model(original, payload), args.repetitions),
                "loss_db": reference - psnr(_nncodec_model(original, payload)),
                "trials": trials,
            }
        )
        config = PackConfig("nnr", nonweight_qp=args.nonweight_qp, dependent=True)
        packed, trials = search_qp(
            lambda qp: pack(slim, slim_meta, dataclasses.replace(config, qp=qp)),
            lambda p: unpack(p)[0],
            psnr,
            reference,
            args.max_loss,
            on_trial=lambda t: say.update(f"nnslim nnr, QP {t['qp']}: loss {t['loss_db']:+.3f} dB"),
        )
        config = dataclasses.replace(config, qp=max(t["qp"] for t in trials if t["within"]))
        rows.append(
            {
                "method": "nnslim nnr (slim)",
                "bytes": len(packed),
                "qp": config.qp,
                "encode_s": _seconds(lambda: pack(slim, slim_meta, config), args.repetitions),
                "decode_s": _seconds(lambda: unpack(packed), args.repetitions),
                "loss_db": reference - psnr(unpack(packed)[0]),
                "trials": trials,
            }
        )
        huffman_trials = []
        best: tuple[PackConfig, bytes, float] | None = None
        for bits in HUFFMAN_BITS:
            say.update(f"nnslim huffman, {bits} bits")
            settings = PackConfig("huffman", bits=bits)
            candidate = pack(slim, slim_meta, settings)
            loss = reference - psnr(unpack(candidate)[0])
            huffman_trials.append({"bits": bits, "bytes": len(candidate), "loss_db": loss})
            if loss > args.max_loss:
                break
            best = (settings, candidate, loss)
        if best is None:
            raise NnslimError(f"huffman: even {HUFFMAN_BITS.start} bits lose more than {args.max_loss} dB")
        chosen, packed_huffman, loss = best
        rows.append(
            {
                "method": "nnslim huffman (slim)",
                "bytes": len(packed_huffman),
                "bits": chosen.bits,
                "encode_s": _seconds(lambda: pack(slim, slim_meta, chosen), args.repetitions),
                "decode_s": _seconds(lambda: unpack(packed_huffman), args.repetitions),
                "loss_db": loss,
                "trials": huffman_trials,
            }
        )
    fp32 = 4 * parameter_count(original)
    for row in rows:
        row["percent_of_fp32"] = 100.0 * row["bytes"] / fp32
    return {
        "config": {
            "original": str(args.original),
            "slim": str(args.slim),
            "max_loss_db": args.max_loss,
            "nonweight_qp": args.nonweight_qp,
            "max_size": args.max_size,
            "frame_step": args.frame_step,
            "repetitions": args.repetitions,
            "test_sequences": [s.name for s in test],
        },
        "fp32_bytes": fp32,
        "original_parameters": parameter_count(original),
        "slim_parameters": parameter_count(slim),
        "reference_psnr_y": reference,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(title=f"bytes against the unpruned fp32 filter ({result['fp32_bytes']:,} bytes), test split")
    for column in ("method", "bytes", "% of fp32", "encode s", "decode s", "Y-PSNR loss dB"):
        out.add_column(column, justify="left" if column == "method" else "right")
    for r in result["rows"]:
        out.add_row(
            r["method"],
            f"{r['bytes']:,}",
            f"{r['percent_of_fp32']:.2f}",
            f"{r['encode_s']:.3f}",
            f"{r['decode_s']:.4f}",
            f"{r['loss_db']:+.3f}",
        )
    return out


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=Path("models/postfilter_x265_qp37.pt"))
    parser.add_argument("--slim", type=Path, required=True, help="slim filter file or compress output folder")
    parser.add_argument("--max-loss", type=float, default=0.05, help="total Y-PSNR loss budget in dB")
    parser.add_argument("--nonweight-qp", type=int, default=-64, help="NNR QP of biases and 1-D tensors")
    parser.add_argument("--sequences", type=Path, default=Path("data/sequences"))
    parser.add_argument("--max-size", default="416x240", help="test sequences up to WxH")
    parser.add_argument("--frame-step", type=int, default=4, help="measure every Nth frame of each test sequence")
    parser.add_argument("--repetitions", type=int, default=5, help="timed encodes and decodes per method")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "bitstream.json")
    args = parser.parse_args()
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        require_writable_file(args.json)
        result = measure(args, console)
    except NnslimError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    console.print(table(result))
    atomic_write_json(args.json, result)
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
