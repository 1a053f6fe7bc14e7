import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch import nn

from nnslim.bitstream.pack import PackConfig, pack, unpack
from nnslim.bitstream.rate import search_qp
from nnslim.errors import NnslimError
from nnslim.models.filters import ArchSpec, build

SPEC = ArchSpec("postfilter", {"channels": 8, "layers": 3})


def _setup() -> tuple[nn.Module, dict, PackConfig, Callable[[nn.Module], float]]:
    torch.manual_seed(0)
    model = build(SPEC)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.1)
    model.eval()
    meta = {"arch": SPEC.to_dict(), "layers": {}}
    frame = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        target = model(frame)

    def psnr(candidate: nn.Module) -> float:
        """PSNR of a decoded filter's output against the original filter's, in dB."""
        with torch.no_grad():
            mse = torch.mean((candidate(frame) - target) ** 2).item()
        return 10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item()

    return model, meta, PackConfig("nnr"), psnr


def test_search_finds_the_coarsest_qp_within_budget() -> None:
    model, meta, config, psnr = _setup()
    data, trials = search_qp(
        lambda qp: pack(model, meta, dataclasses.replace(config, qp=qp)),
        lambda packed: unpack(packed)[0],
        psnr,
        120.0,
        max_loss=60.0,
        qps=range(-64, 0),
    )
    chosen = max(t["qp"] for t in trials if t["within"])
    assert len(trials) <= 8 and all(t["loss_db"] > 60.0 for t in trials if t["qp"] > chosen)
    assert data == pack(model, meta, dataclasses.replace(config, qp=chosen))
    assert len(data) <= min(t["bytes"] for t in trials if t["within"])


def test_search_refuses_an_impossible_budget() -> None:
    model, meta, config, psnr = _setup()
    with pytest.raises(NnslimError, match="even QP -64"):
        search_qp(
            lambda qp: pack(model, meta, dataclasses.replace(config, qp=qp)),
            lambda packed: unpack(packed)[0],
            psnr,
            1000.0,
            max_loss=0.0,
        )
