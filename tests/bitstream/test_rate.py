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
    qp, data, trials = search_qp(
        lambda qp: pack(model, meta, dataclasses.replace(config, nnr_qp=qp)),
        lambda packed: unpack(packed)[0],
        psnr,
        120.0,
        max_loss=60.0,
        qps=range(-64, 0),
    )
    chosen = max(t["qp"] for t in trials if t["within"])
    assert qp == chosen
    assert len(trials) <= 16 and all(t["loss_db"] > 60.0 for t in trials if t["qp"] > chosen)
    assert data == pack(model, meta, dataclasses.replace(config, nnr_qp=chosen))
    assert len(data) <= min(t["bytes"] for t in trials if t["within"])


def test_search_refuses_an_impossible_budget() -> None:
    model, meta, config, psnr = _setup()
    with pytest.raises(NnslimError, match="even QP -64"):
        search_qp(
            lambda qp: pack(model, meta, dataclasses.replace(config, nnr_qp=qp)),
            lambda packed: unpack(packed)[0],
            psnr,
            1000.0,
            max_loss=0.0,
        )


def test_search_picks_a_coarser_qp_past_a_non_monotone_dip() -> None:
    """A loss that crosses the budget, dips back under it, then rises: the coarsest fitting QP wins."""
    losses = {qp: (0.0 if qp <= -30 else 1.0) for qp in range(-64, 0)} | {-27: 0.0}
    qp, data, trials = search_qp(
        lambda qp: str(qp).encode(), lambda packed: int(packed), lambda qp: -losses[qp], 0.0, max_loss=0.5
    )
    assert qp == -27 and data == b"-27"
    tried = [t["qp"] for t in trials]
    assert len(tried) == len(set(tried)) and -30 in tried and -22 in tried
