import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nnslim.errors import NnslimError
from nnslim.models.data import LumaPairs, encode_pairs, sample_batch
from nnslim.models.filters import ArchSpec, build
from nnslim.models.train import (
    MAX_LINEAGE,
    TrainConfig,
    learning_rate,
    lineage,
    load_filter,
    save_filter,
    starting_weights,
    train,
    validate,
    validate_file,
)
from nnslim.video.yuv import Sequence

SMALL = ArchSpec("postfilter", {"channels": 8, "layers": 3})


@pytest.fixture
def pairs(tiny_sequence: Sequence, tmp_path: Path) -> list[LumaPairs]:
    return encode_pairs([tiny_sequence], "x265", (37,), tmp_path / "cache")


def test_pairs_come_from_a_real_encode(pairs: list[LumaPairs]) -> None:
    (pair,) = pairs
    assert pair.decoded.shape == pair.original.shape == (8, 64, 128)
    assert not np.array_equal(pair.decoded, pair.original)
    assert np.abs(pair.decoded.astype(int) - pair.original).mean() < 10


def test_patch_sampling_is_deterministic(pairs: list[LumaPairs]) -> None:
    a = sample_batch(pairs, np.random.default_rng(3), 4, 32)
    b = sample_batch(pairs, np.random.default_rng(3), 4, 32)
    for left, right in zip(a, b, strict=True):
        assert torch.equal(left, right)
    assert a[0].shape == (4, 1, 32, 32) and float(a[0].max()) <= 1.0 and list(a[2]) == [37.0] * 4


def test_learning_rate_warms_up_then_decays() -> None:
    config = TrainConfig(SMALL, steps=100, warmup=10, lr=1e-3, final_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 100) == pytest.approx(1e-4)


def test_resume_gives_the_same_weights(pairs: list[LumaPairs], tmp_path: Path) -> None:
    config = TrainConfig(SMALL, steps=6, batch=2, patch=32, warmup=2, margin=4, checkpoint_every=3, threads=1)
    train(config, pairs, pairs, tmp_path / "straight.pt")

    def stop_after_checkpoint(step: int, _loss: float, _report: object) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, pairs, pairs, tmp_path / "resumed.pt", on_step=stop_after_checkpoint)
    description = train(config, pairs, pairs, tmp_path / "resumed.pt", resume=True)
    straight = torch.load(tmp_path / "straight.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert [h["step"] for h in description["history"]] == [3, 6]
    assert set(description["validation"]) >= {"psnr_y_codec", "psnr_y_filtered", "gain_db"}


def test_resume_may_use_another_thread_count(pairs: list[LumaPairs], tmp_path: Path) -> None:
    config = TrainConfig(SMALL, steps=4, batch=2, patch=32, checkpoint_every=2, threads=1)

    def stop_after_checkpoint(step: int, _loss: float, _report: object) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, pairs, [], tmp_path / "f.pt", on_step=stop_after_checkpoint)
    description = train(replace(config, threads=2), pairs, [], tmp_path / "f.pt", resume=True)
    assert [h["step"] for h in description["history"]] == [2, 4]


def test_resume_with_other_settings_is_refused(pairs: list[LumaPairs], tmp_path: Path) -> None:
    config = TrainConfig(SMALL, steps=2, batch=2, patch=32, checkpoint_every=1, threads=1)
    train(config, pairs, [], tmp_path / "f.pt")
    with pytest.raises(NnslimError, match="other settings"):
        train(
            TrainConfig(SMALL, steps=2, batch=4, patch=32, checkpoint_every=1),
            pairs,
            [],
            tmp_path / "f.pt",
            resume=True,
        )


def test_loader_round_trip_and_refusals(pairs: list[LumaPairs], tmp_path: Path) -> None:
    out = tmp_path / "f.pt"
    train(TrainConfig(SMALL, steps=1, batch=2, patch=32, threads=1), pairs, [], out)
    model, meta = load_filter(out)
    assert meta["arch"] == SMALL.to_dict() and not model.training

    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Conv2d(1, 1, 3), pickled)
    pickled.with_suffix(".json").write_text(out.with_suffix(".json").read_text())
    with pytest.raises(NnslimError, match="not a plain state dict"):
        load_filter(pickled)

    other = tmp_path / "other.pt"
    other.write_bytes(out.read_bytes())
    other.with_suffix(".json").write_text(
        out.with_suffix(".json").read_text().replace('"channels": 8', '"channels": 16')
    )
    with pytest.raises(NnslimError, match="weights do not match architecture 'postfilter'"):
        load_filter(other)

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(out.read_bytes()[:100])
    truncated.with_suffix(".json").write_text(out.with_suffix(".json").read_text())
    with pytest.raises(NnslimError, match="not a plain state dict"):
        load_filter(truncated)


def test_init_starts_from_another_filter_and_records_it(pairs: list[LumaPairs], tmp_path: Path) -> None:
    first = tmp_path / "first.pt"
    train(TrainConfig(SMALL, steps=2, batch=2, patch=32, threads=1), pairs, [], first)
    config = TrainConfig(SMALL, steps=1, batch=2, patch=32, lr=0.0, warmup=1, threads=1, init=str(first))
    description = train(config, pairs, [], tmp_path / "second.pt")
    before = torch.load(first, weights_only=True)
    after = torch.load(tmp_path / "second.pt", weights_only=True)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert description["training"]["init_from"]["file"] == "first.pt"
    assert [run["steps"] for run in lineage(description["training"])] == [2, 1]


def test_init_from_another_architecture_is_refused(pairs: list[LumaPairs], tmp_path: Path) -> None:
    first = tmp_path / "first.pt"
    train(TrainConfig(SMALL, steps=1, batch=2, patch=32, threads=1), pairs, [], first)
    other = TrainConfig(ArchSpec("postfilter", {"channels": 4, "layers": 3}), steps=1, init=str(first))
    with pytest.raises(NnslimError, match="cannot start 'postfilter' from it"):
        train(other, pairs, [], tmp_path / "second.pt")


@pytest.mark.parametrize("arch", ["postfilter", "vrcnn", "inloop"])
def test_a_qp_input_filter_starts_from_one_without_it_unchanged(tmp_path: Path, arch: str) -> None:
    small = {"postfilter": {"channels": 8, "layers": 3}, "vrcnn": {}, "inloop": {"channels": 8, "blocks": 1}}[arch]
    first = build(ArchSpec(arch, small))
    save_filter(first, tmp_path / "first.pt", {"arch": ArchSpec(arch, small).to_dict(), "training": {}})
    spec = ArchSpec(arch, {**small, "qp_input": True})
    weights, _ = starting_weights(tmp_path / "first.pt", spec)
    widened = build(spec)
    widened.load_state_dict(weights)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for qp in (22.0, 37.0):
            torch.testing.assert_close(widened(x, torch.full((2,), qp)), first(x))


def _marked_user_filter(tmp_path: Path) -> tuple[Path, str, Path]:
    """A filter file of a user factory whose module leaves a mark each time its code runs."""
    source, mark = tmp_path / "mine.py", tmp_path / "ran"
    source.write_text(
        f"from pathlib import Path\nfrom torch import nn\nPath({str(mark)!r}).touch()\n"
        "def make():\n    return nn.Conv2d(1, 1, 3, padding=1)\n"
    )
    factory = f"{source}:make"
    path = tmp_path / "mine.pt"
    save_filter(build(ArchSpec(factory)), path, {"arch": ArchSpec(factory).to_dict(), "training": {}})
    mark.unlink()
    return path, factory, mark


def test_a_user_architecture_is_built_only_when_trusted(tmp_path: Path) -> None:
    path, factory, mark = _marked_user_filter(tmp_path)
    for trusted in (None, f"{tmp_path / 'other.py'}:make", factory.replace(":make", ":other")):
        with pytest.raises(NnslimError) as refused:
            load_filter(path, trusted)
        message = str(refused.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert f"user factory {factory!r}" in message and message.endswith(f"give --trust-factory {factory}")
    assert not mark.exists()
    model, meta = load_filter(path, factory)
    assert mark.exists() and meta["arch"]["name"] == factory
    for name, value in torch.load(path, weights_only=True).items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_fine_tune_trusts_the_user_architecture_it_was_told_to_train(tmp_path: Path) -> None:
    path, factory, mark = _marked_user_filter(tmp_path)
    with pytest.raises(NnslimError, match="cannot start 'postfilter' from it"):
        starting_weights(path, SMALL)
    assert not mark.exists()
    weights, record = starting_weights(path, ArchSpec(factory))
    assert mark.exists() and record["file"] == "mine.pt"
    assert torch.equal(weights["weight"], torch.load(path, weights_only=True)["weight"])


def test_lineage_follows_recorded_runs_then_init_files_and_cannot_loop(tmp_path: Path) -> None:
    def describe(name: str, training: dict) -> str:
        path = tmp_path / f"{name}.pt"
        path.with_suffix(".json").write_text(json.dumps({"arch": SMALL.to_dict(), "training": training}))
        return str(path)

    first = describe("first", {"train_sequences": ["A"], "validation_sequences": ["B"]})
    second = {"train_sequences": ["C"], "validation_sequences": [], "init": first}  # recorded only the path
    third = {"train_sequences": ["D"], "init": "moved.pt", "init_from": {"file": "second.pt", "training": second}}
    assert [run["train_sequences"] for run in lineage(third)] == [["A"], ["C"], ["D"]]
    assert lineage({"train_sequences": ["E"], "init": str(tmp_path / "gone.pt")})[0]["train_sequences"] == ["E"]
    loop = describe("loop", {"train_sequences": ["F"], "init": str(tmp_path / "loop.pt")})
    assert len(lineage({"init": loop})) == MAX_LINEAGE


def test_a_filter_files_validation_is_measured_once_per_file_and_frames(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build(ArchSpec("postfilter", {"channels": 4, "layers": 3}))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "f.pt"
    save_filter(model, path, {"format": "nnslim-filter", "arch": {"name": "postfilter", "kwargs": {}}})
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (4, 24, 32), dtype=np.uint8)
    pairs = [LumaPairs("A", 37, np.clip(original + 3, 0, 255).astype(np.uint8), original, 1.0)]
    first = validate_file(path, model, pairs, 2, tmp_path / "psnr")
    assert first == validate(model, pairs, 2) and len(list((tmp_path / "psnr").iterdir())) == 1
    with torch.no_grad():
        model.body[0].bias.add_(1.0)  # the file is unchanged, so the kept figure is returned
    assert validate_file(path, model, pairs, 2, tmp_path / "psnr") == first
    other = [LumaPairs("A", 37, original, original, 1.0)]
    assert validate_file(path, model, other, 2, tmp_path / "psnr") == validate(model, other, 2)
    assert len(list((tmp_path / "psnr").iterdir())) == 2
