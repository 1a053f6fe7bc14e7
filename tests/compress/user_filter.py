"""A user's own filter for the tests (PixelUnshuffle, BatchNorm, PReLU, residual, PixelShuffle), and small archs."""

from pathlib import Path

import torch
from torch import nn

USER = f"{Path(__file__)}:make"
SMALL_ARCHS: dict[str, dict[str, int]] = {
    "postfilter": {"channels": 16, "layers": 4},
    "vrcnn": {},
    "inloop": {"channels": 16, "blocks": 2},
    USER: {},
}


class UserFilter(nn.Module):
    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.down = nn.PixelUnshuffle(2)
        self.head = nn.Conv2d(4, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.expand = nn.Conv2d(channels, 4 * 8, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.refine = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm(self.head(self.down(x))))
        h = h + self.conv2(torch.relu(self.conv1(h)))
        return x + self.tail(torch.relu(self.refine(self.up(self.expand(h)))))


def make(channels: int = 16) -> nn.Module:
    return UserFilter(channels)


class WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.tail = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.norm(self.conv(x)))
