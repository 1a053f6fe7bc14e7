import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from nnslim.errors import NnslimError
from nnslim.evaluate import runtime
from nnslim.evaluate.runtime import (
    export_onnx,
    interleaved_ms,
    onnx_max_difference,
    onnx_ms_per_frame,
    onnx_runner,
    onnx_runtime_of,
    onnx_session,
    torch_ms_per_frame,
)
from nnslim.models import layers
from nnslim.models.apply import run_tiles, torch_runner
from nnslim.models.filters import ArchSpec, build
from nnslim.models.layers import SeparableConv2d
from nnslim.models.train import load_filter

TOLERANCE = 1e-4

SMALL = {
    "postfilter": ArchSpec("postfilter", {"channels": 8, "layers": 3}),
    "vrcnn": ArchSpec("vrcnn"),
    "inloop": ArchSpec("inloop", {"channels": 8, "blocks": 1}),
    "postfilter-qp": ArchSpec("postfilter", {"channels": 8, "layers": 3, "qp_input": True}),
    "inloop-qp": ArchSpec("inloop", {"channels": 8, "blocks": 1, "qp_input": True}),
}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere: a new filter's output layer is zero, which would make it the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model.eval()


def _small(name: str) -> nn.Module:
    return _randomise(build(SMALL[name]))


@pytest.mark.parametrize("name", list(SMALL))
def test_onnx_export_matches_pytorch(name: str, tmp_path: Path) -> None:
    model = _small(name)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    # Export traces 48x64 frames; these sizes and a batch of two exercise the dynamic axes.
    assert onnx_max_difference(model, path, height=32, width=40) < TOLERANCE
    assert onnx_max_difference(model, path) < TOLERANCE
    session = onnx_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == (["luma", "qp"] if "qp" in name else ["luma"])
    assert [o.name for o in session.get_outputs()] == ["restored"]
    assert [type(d) for d in session.get_inputs()[0].shape] == [str, int, str, str]  # N, 1, H, W


def test_qp_input_changes_the_onnx_output(tmp_path: Path) -> None:
    model = _small("postfilter-qp")
    session = onnx_session(export_onnx(model, tmp_path / "qp.onnx"))
    luma = torch.rand(1, 1, 16, 16).numpy()
    low, high = (session.run(None, {"luma": luma, "qp": torch.tensor([qp]).numpy()})[0] for qp in (22.0, 51.0))
    assert abs(low - high).max() > 1e-3


def _save_filter(model: nn.Module, arch: ArchSpec, path: Path) -> None:
    reference = build(arch)
    meta: dict[str, Any] = {"arch": arch.to_dict(), "layers": layers.changed(model, reference)}
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(meta))


def _conv_spec(in_channels: int, out_channels: int) -> dict[str, Any]:
    spec = layers.describe(nn.Conv2d(in_channels, out_channels, 3, padding=1))
    assert spec is not None
    return spec


def test_slim_filter_from_a_layer_table(tmp_path: Path) -> None:
    arch = SMALL["postfilter"]
    # Pruned to 5 channels between the first two convolutions: two coupled layers change shape.
    table = {"body.0": _conv_spec(1, 5), "body.2": _conv_spec(5, 8)}
    slim = _randomise(layers.apply(build(arch), table), seed=1)
    _save_filter(slim, arch, tmp_path / "slim.pt")
    loaded, meta = load_filter(tmp_path / "slim.pt")
    assert set(meta["layers"]) == {"body.0", "body.2"}
    assert loaded.get_submodule("body.0").out_channels == 5
    path = export_onnx(loaded, tmp_path / "slim.onnx")
    assert onnx_max_difference(loaded, path) < TOLERANCE


def test_separable_convolution_exports(tmp_path: Path) -> None:
    model = build(SMALL["postfilter"])
    spec = layers.describe(SeparableConv2d(8, 3, 8, kernel_size=3, padding=1, bias=True))
    assert spec is not None
    model = _randomise(layers.apply(model, {"body.2": spec}), seed=2)
    assert isinstance(model.get_submodule("body.2"), SeparableConv2d)
    path = export_onnx(model, tmp_path / "separable.onnx")
    assert onnx_max_difference(model, path, height=24, width=40) < TOLERANCE


def test_export_keeps_training_mode_and_writes_only_the_file(tmp_path: Path) -> None:
    model = _small("postfilter").train()
    export_onnx(model, tmp_path / "f.onnx")
    assert model.training
    assert [p.name for p in tmp_path.iterdir()] == ["f.onnx"]


def test_export_into_a_missing_directory_fails(tmp_path: Path) -> None:
    with pytest.raises(NnslimError, match="does not exist"):
        export_onnx(_small("postfilter"), tmp_path / "nowhere" / "f.onnx")


def test_interleaved_timing_alternates_the_calls_after_a_warm_up() -> None:
    calls: list[str] = []
    timing = interleaved_ms({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repetitions=5)
    assert calls == ["a", "b"] * 6
    assert set(timing) == {"a", "b"} and all(len(t["runs_ms"]) == 5 for t in timing.values())
    for t in timing.values():
        assert t["min_ms"] == min(t["runs_ms"]) <= t["median_ms"] <= max(t["runs_ms"])
    with pytest.raises(NnslimError, match="repetitions"):
        interleaved_ms({"a": lambda: None}, repetitions=0)


def test_torch_and_onnx_timings_on_a_tiny_frame(tmp_path: Path) -> None:
    model = _small("inloop-qp")
    threads = torch.get_num_threads()
    timing = torch_ms_per_frame(model, width=32, height=16, repetitions=2, threads=1)
    assert torch.get_num_threads() == threads
    assert len(timing["runs_ms"]) == 2 and timing["median_ms"] >= 0
    path = export_onnx(model, tmp_path / "f.onnx")
    timing = onnx_ms_per_frame(path, width=32, height=16, repetitions=2)
    assert len(timing["runs_ms"]) == 2 and timing["min_ms"] >= 0


@pytest.mark.parametrize("name", ["postfilter-qp", "vrcnn"])
def test_onnx_runtime_filters_a_tiled_frame_like_pytorch(name: str, tmp_path: Path) -> None:
    model = _randomise(build(SMALL[name]))
    plane = np.random.default_rng(1).integers(0, 256, size=(40, 70), dtype=np.uint8)
    path = export_onnx(model, tmp_path / "f.onnx")
    with torch.inference_mode():
        ours = run_tiles(torch_runner(model, 37), plane, tile=16, overlap=8).astype(int)
        theirs = run_tiles(onnx_runner(onnx_session(path), 37.0), plane, tile=16, overlap=8).astype(int)
    assert np.abs(ours - theirs).max() <= 1


@pytest.mark.parametrize("content", [b"", b"definitely not a protobuf \xff\xfe"])
def test_corrupt_onnx_file_is_an_nnslim_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(NnslimError, match=r"bad\.onnx"):
        onnx_session(path)
    with pytest.raises(NnslimError, match=r"bad\.onnx"):
        onnx_ms_per_frame(path, width=16, height=16, repetitions=1)


def test_truncated_and_missing_onnx_files(tmp_path: Path) -> None:
    good = export_onnx(_small("postfilter"), tmp_path / "good.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(NnslimError, match=r"truncated\.onnx"):
        onnx_max_difference(_small("postfilter"), truncated)
    with pytest.raises(NnslimError, match="no such ONNX file"):
        onnx_session(tmp_path / "missing.onnx")


def test_an_onnx_file_is_checked_before_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = export_onnx(_small("postfilter"), tmp_path / "good.onnx")
    assert onnx_runtime_of(good) == "onnxruntime"
    with pytest.raises(NnslimError, match="no such ONNX file"):
        onnx_runtime_of(tmp_path / "missing.onnx")
    monkeypatch.setattr(runtime, "MAX_ONNX_BYTES", good.stat().st_size - 1)
    for read in (onnx_runtime_of, onnx_session):
        with pytest.raises(NnslimError, match="over the limit"):
            read(good)
