from pathlib import Path

import pytest
import torch

from nnslim.models.filters import takes_qp
from nnslim.models.train import lineage, load_filter
from nnslim.video.content import DEFAULT_RECIPES

SHIPPED = sorted(p for p in (Path(__file__).parents[2] / "models").glob("*.pt") if ".ckpt" not in p.name)
TEST_SPLIT = {r.name for r in DEFAULT_RECIPES if r.split == "test"}


def test_the_shipped_set_is_complete() -> None:
    names = {p.stem for p in SHIPPED}
    wanted = {f"postfilter_x265_qp{qp}" for qp in (22, 27, 32, 37)} | {"vrcnn_x265_qp37", "inloop_x265_qp37"}
    wanted.add("postfilter_x265_qp22-37")
    assert wanted <= names


def _named_qps(path: Path) -> list[int]:
    """The QPs a file's name says it was trained for: ``_qp37``, or ``_qp22-37`` for the ladder between."""
    low, _, high = path.stem.rsplit("_qp", 1)[1].partition("-")
    return [qp for qp in (22, 27, 32, 37) if int(low) <= qp <= int(high or low)]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_filter_loads_and_restores_a_frame(path: Path) -> None:
    model, meta = load_filter(path)
    runs = lineage(meta["training"])
    assert all(run["codec"] == "x265" for run in runs) and meta["training"]["qps"] == _named_qps(path)
    assert not any(TEST_SPLIT & {*run["train_sequences"], *run["validation_sequences"]} for run in runs)
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        y = model(x, torch.tensor([37.0])) if takes_qp(model) else model(x)
    assert y.shape == x.shape and not torch.equal(x, y)
