"""File size, coding time and quality of a filter's compressed representations, in one run.

Every choice (NNR QP, Huffman bits) is made on the validation sequences the filter was trained
without (every ``--frame-step``-th frame); the chosen file is then measured once on the test split
(sequences up to ``--max-size``), and both losses are reported side by side. Frames are coded at
the codec and QPs the filter was trained for; every loss is the Y-PSNR of the decoded filter
against the *unpruned* original's, and every size a percentage of the unpruned filter's fp32
bytes:

- ``zip`` and ``lzma`` of the unpruned fp32 state dict: the floor every coder beats;
- ``nncodec``: NNCodec's NNR coding alone (its core, dependent quantization, the QP searched
  for the coarsest QP within ``--max-loss``) on the unpruned filter, as NNCodec is used
  without pruning; its bytes are the bare NNR bitstream;
- ``nnslim nnr``: the slim filter in an ``.nnsl`` file with the ``nnr`` coder, QP searched the same way;
- ``nnslim huffman``: the slim filter with Deep Compression's coding, the fewest k-means bits within
  the budget (every bit count from 8 to 2 is tried).

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
from nnslim.models.filters import parameter_count
from nnslim.models.splits import splits_for
from nnslim.models.train import load_filter, validate
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
        "validation_loss_db": 0.0,
        "test_loss_db": 0.0,
    }


def _losses(reference: dict[str, float], psnr: Callable[[nn.Module, str], float], model: nn.Module) -> dict[str, float]:
    """A decoded filter's Y-PSNR loss against the unpruned filter, on validation and on test."""
    return {f"{split}_loss_db": reference[split] - psnr(model, split) for split in ("validation", "test")}


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    original, original_meta = load_filter(args.original)
    slim, slim_meta = load_filter(args.slim / "slim.pt" if args.slim.is_dir() else args.slim)
    splits = splits_for(original_meta, args.sequences, parse_size(args.max_size))
    with console.status("encoding the validation and test sequences"):
        pairs = {split: splits.pairs(split) for split in ("validation", "test")}

    def psnr(model: nn.Module, split: str) -> float:
        return validate(model, pairs[split], frame_step=args.frame_step)["psnr_y_filtered"]

    reference = {split: psnr(original, split) for split in pairs}
    rows = [_floor("zip", original, args.repetitions), _floor("lzma", original, args.repetitions)]
    say = console.status("searching on validation")
    with say:
        arrays = _state_arrays(original)
        nncodec_settings = {"nonweight_qp": args.nonweight_qp, "dependent": True}
        qp, payload, trials = search_qp(
            lambda qp: nnr.encode(arrays, qp, **nncodec_settings),
            lambda p: _nncodec_model(original, p),
            lambda m: psnr(m, "validation"),
            reference["validation"],
            args.max_loss,
            on_trial=lambda t: say.update(f"NNCodec alone, QP {t['nnr_qp']}: loss {t['loss_db']:+.3f} dB"),
        )
        rows.append(
            {
                "method": "NNCodec alone (unpruned, dependent quantization)",
                "bytes": len(payload),
                "qp": qp,
                "encode_s": _seconds(lambda: nnr.encode(arrays, qp, **nncodec_settings), args.repetitions),
                "decode_s": _seconds(lambda: _nncodec_model(original, payload), args.repetitions),
                **_losses(reference, psnr, _nncodec_model(original, payload)),
                "trials": trials,
            }
        )
        config = PackConfig("nnr", nonweight_qp=args.nonweight_qp, dependent=True)
        qp, packed, trials = search_qp(
            lambda qp: pack(slim, slim_meta, dataclasses.replace(config, nnr_qp=qp)),
            lambda p: unpack(p)[0],
            lambda m: psnr(m, "validation"),
            reference["validation"],
            args.max_loss,
            on_trial=lambda t: say.update(f"nnslim nnr, QP {t['nnr_qp']}: loss {t['loss_db']:+.3f} dB"),
        )
        config = dataclasses.replace(config, nnr_qp=qp)
        rows.append(
            {
                "method": "nnslim nnr (slim)",
                "bytes": len(packed),
                "qp": config.nnr_qp,
                "encode_s": _seconds(lambda: pack(slim, slim_meta, config), args.repetitions),
                "decode_s": _seconds(lambda: unpack(packed), args.repetitions),
                **_losses(reference, psnr, unpack(packed)[0]),
                "trials": trials,
            }
        )
        huffman_trials = []
        for bits in HUFFMAN_BITS:
            say.update(f"nnslim huffman, {bits} bits")
            candidate = pack(slim, slim_meta, PackConfig("huffman", bits=bits))
            loss = reference["validation"] - psnr(unpack(candidate)[0], "validation")
            huffman_trials.append(
                {"bits": bits, "bytes": len(candidate), "loss_db": loss, "within": loss <= args.max_loss}
            )
        fits = [t["bits"] for t in huffman_trials if t["within"]]
        if not fits:
            raise NnslimError(
                f"huffman: even {HUFFMAN_BITS.start} bits lose more than {args.max_loss} dB on validation"
            )
        chosen = PackConfig("huffman", bits=min(fits))
        packed_huffman = pack(slim, slim_meta, chosen)
        rows.append(
            {
                "method": "nnslim huffman (slim)",
                "bytes": len(packed_huffman),
                "bits": chosen.bits,
                "encode_s": _seconds(lambda: pack(slim, slim_meta, chosen), args.repetitions),
                "decode_s": _seconds(lambda: unpack(packed_huffman), args.repetitions),
                **_losses(reference, psnr, unpack(packed_huffman)[0]),
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
            "decided_on": "validation",
            "nonweight_qp": args.nonweight_qp,
            "max_size": args.max_size,
            "frame_step": args.frame_step,
            "repetitions": args.repetitions,
            "validation_sequences": sorted({p.name for p in pairs["validation"]}),
            "test_sequences": sorted({p.name for p in pairs["test"]}),
        },
        "fp32_bytes": fp32,
        "original_parameters": parameter_count(original),
        "slim_parameters": parameter_count(slim),
        "reference_psnr_y": reference,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> Table:
    out = Table(
        title=f"bytes against the unpruned fp32 filter ({result['fp32_bytes']:,} bytes); "
        "QP and bits chosen on validation, test measured once after"
    )
    for column in ("method", "bytes", "% of fp32", "encode s", "decode s", "validation loss dB", "test loss dB"):
        out.add_column(column, justify="left" if column == "method" else "right")
    for r in result["rows"]:
        out.add_row(
            r["method"],
            f"{r['bytes']:,}",
            f"{r['percent_of_fp32']:.2f}",
            f"{r['encode_s']:.3f}",
            f"{r['decode_s']:.4f}",
            f"{r['validation_loss_db']:+.3f}",
            f"{r['test_loss_db']:+.3f}",
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
