"""Shared fixtures: tiny real content, and a results store per test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nnslim.models.filters import ArchSpec, build
from nnslim.video.content import CameraMove, Recipe, render, write_manifest
from nnslim.video.yuv import Sequence, jvet_name, write_yuv


@pytest.fixture(autouse=True)
def private_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every test's runs out of the user's results store."""
    store = tmp_path / "store.sqlite"
    monkeypatch.setenv("NNSLIM_STORE", str(store))
    return store


def random_filter(arch: ArchSpec, seed: int, std: float) -> nn.Module:
    """A filter of ``arch`` in eval mode whose every parameter is drawn from N(0, std), seeded (its output layer not
    zero, so that it filters)."""
    torch.manual_seed(seed)
    model = build(arch)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model.eval()


def make_sequence(folder: Path, name: str = "Tiny", frames: int = 8, split: str = "test") -> Sequence:
    """A 128x64 pan over the astronaut photo, written the JVET way."""
    recipe = Recipe(name, split, 128, 64, 30.0, frames, CameraMove("astronaut", (200, 200, 1.0), (232, 216, 0.9)), "")
    path = folder / jvet_name(name, 128, 64, 30.0)
    write_yuv(path, render(recipe))
    return Sequence(name, path, 128, 64, 30.0, frames, 8, split, "test pan", "")


def make_folder_with_validation(tmp_path: Path) -> Path:
    """A sequence folder with a test sequence and two train-split ones (TinyTrain, TinyVal)."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    write_manifest(
        folder,
        [
            make_sequence(folder, "Tiny"),
            make_sequence(folder, "TinyTrain", split="train"),
            make_sequence(folder, "TinyVal", split="train"),
        ],
    )
    return folder


@pytest.fixture
def tiny_sequence(tmp_path: Path) -> Sequence:
    """One tiny real-content sequence."""
    return make_sequence(tmp_path)


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A sequence folder with a manifest: one tiny test sequence and one tiny train sequence."""
    folder = tmp_path / "sequences"
    folder.mkdir()
    write_manifest(folder, [make_sequence(folder, "Tiny"), make_sequence(folder, "TinyTrain", split="train")])
    return folder
