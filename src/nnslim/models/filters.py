"""Filter architectures that restore codec-decoded luma, and the registry that names them.

Every filter maps a batch of decoded luma planes in [0, 1], shape (N, 1, H, W), to restored
planes of the same shape, and learns the residual (output = input + correction). With
``qp_input`` the normalised QP (QP / 63) is fed as a second, constant plane.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnslim.errors import NnslimError

QP_SCALE = 63.0


def _zero(conv: nn.Conv2d) -> nn.Conv2d:
    """Start an output layer at zero, so that a new filter is the identity and only improves from there."""
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _with_qp(x: torch.Tensor, qp: torch.Tensor | None, qp_input: bool) -> torch.Tensor:
    if not qp_input:
        return x
    if qp is None:
        raise NnslimError("this filter takes the QP as input; pass qp")
    plane = (qp.to(x.dtype) / QP_SCALE).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, x.shape[2], x.shape[3])
    return torch.cat([x, plane], dim=1)


class PostFilter(nn.Module):
    """The NNR use case's post-processing filter: 3x3 convolutions with ReLU and a global residual.

    Args:
        channels: Feature channels of the hidden layers.
        layers: Number of convolution layers (7 in the reference filter).
        qp_input: Take the QP as a second input plane.
    """

    def __init__(self, channels: int = 64, layers: int = 7, qp_input: bool = False) -> None:
        super().__init__()
        self.qp_input = qp_input
        convs: list[nn.Module] = [nn.Conv2d(2 if qp_input else 1, channels, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
        convs.append(_zero(nn.Conv2d(channels, 1, 3, padding=1)))
        self.body = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor, qp: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body(_with_qp(x, qp, self.qp_input))


class VRCNN(nn.Module):
    """VRCNN (Dai et al. 2017): parallel 5x5/3x3 and 3x3/1x1 branches joined by concatenation.

    Args:
        qp_input: Take the QP as a second input plane.
    """

    def __init__(self, qp_input: bool = False) -> None:
        super().__init__()
        self.qp_input = qp_input
        self.conv1 = nn.Conv2d(2 if qp_input else 1, 64, 5, padding=2)
        self.conv2_5x5 = nn.Conv2d(64, 16, 5, padding=2)
        self.conv2_3x3 = nn.Conv2d(64, 32, 3, padding=1)
        self.conv3_3x3 = nn.Conv2d(48, 16, 3, padding=1)
        self.conv3_1x1 = nn.Conv2d(48, 32, 1)
        self.conv4 = _zero(nn.Conv2d(48, 1, 3, padding=1))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, qp: torch.Tensor | None = None) -> torch.Tensor:
        h = self.relu(self.conv1(_with_qp(x, qp, self.qp_input)))
        h = self.relu(torch.cat([self.conv2_5x5(h), self.conv2_3x3(h)], dim=1))
        h = self.relu(torch.cat([self.conv3_3x3(h), self.conv3_1x1(h)], dim=1))
        return x + self.conv4(h)


class ChannelAttention(nn.Module):
    """Squeeze-excitation: scale each channel by a gate computed from its global mean."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, 1)
        self.excite = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=(2, 3), keepdim=True)))))
        return x * gate


class AttentionBlock(nn.Module):
    """Residual block: conv, PReLU, conv, channel attention, plus the skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.attention = ChannelAttention(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(self.act(self.conv1(x))))


class InLoopFilter(nn.Module):
    """A larger filter in the spirit of BBC R&D's in-loop filter: attention residual blocks.

    Args:
        channels: Feature channels.
        blocks: Number of residual blocks with channel attention.
        shuffle: Work at half resolution between PixelUnshuffle(2) and PixelShuffle(2).
        qp_input: Take the QP as a second input plane.
    """

    def __init__(self, channels: int = 64, blocks: int = 8, shuffle: bool = True, qp_input: bool = False) -> None:
        super().__init__()
        self.qp_input = qp_input
        planes = 2 if qp_input else 1
        factor = 2 if shuffle else 1
        self.down = nn.PixelUnshuffle(factor)
        self.head = nn.Conv2d(planes * factor * factor, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(AttentionBlock(channels) for _ in range(blocks)))
        self.tail = _zero(nn.Conv2d(channels, factor * factor, 3, padding=1))
        self.up = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor, qp: torch.Tensor | None = None) -> torch.Tensor:
        h = self.head(self.down(_with_qp(x, qp, self.qp_input)))
        return x + self.up(self.tail(self.blocks(h)))


@dataclass(frozen=True)
class ArchSpec:
    """An architecture by name, with the keyword arguments of its factory.

    ``name`` is a registry name (``postfilter``) or a user factory given as
    ``path/to/file.py:factory`` or ``package.module:factory``.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ArchSpec:
        return ArchSpec(str(data["name"]), dict(data.get("kwargs", {})))


REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "postfilter": PostFilter,
    "vrcnn": VRCNN,
    "inloop": InLoopFilter,
}


def _user_factory(name: str) -> Callable[..., nn.Module]:
    target, _, attr = name.rpartition(":")
    if not target or not attr:
        known = ", ".join(REGISTRY)
        raise NnslimError(f"unknown architecture {name!r}; choose from {known}, or give FILE.py:FACTORY")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise NnslimError(f"{path}: no such file for architecture {name!r}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise NnslimError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise NnslimError(f"cannot import {target!r} for architecture {name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise NnslimError(f"{target} has no callable {attr!r}")
    return factory


def is_trusted(name: str, trusted_factory: str | None) -> bool:
    """Whether a file that names architecture ``name`` may have it built.

    Building a user factory runs its code, so a file may name a built-in architecture, or the one
    user factory the user said to trust (``--trust-factory``), exactly as the file spells it.
    """
    return name in REGISTRY or name == trusted_factory


def build(spec: ArchSpec) -> nn.Module:
    """Instantiate an architecture.

    Raises:
        NnslimError: Unknown name, bad arguments, or a factory that returns no ``nn.Module``.
    """
    factory = REGISTRY.get(spec.name) or _user_factory(spec.name)
    try:
        model = factory(**spec.kwargs)
    except TypeError as exc:
        raise NnslimError(f"bad arguments for architecture {spec.name!r}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise NnslimError(f"factory {spec.name!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def takes_qp(model: nn.Module) -> bool:
    """Whether a filter's forward takes the QP and uses it."""
    return bool(getattr(model, "qp_input", False)) and "qp" in inspect.signature(model.forward).parameters


def parameter_count(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def kmac_per_pixel(model: nn.Module, height: int = 64, width: int = 64) -> float:
    """Thousands of multiply-accumulates per luma pixel, counted over convolutions and linear layers.

    Counted with forward hooks on a zero input of the given size.
    """
    macs = 0

    def count(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        x = torch.zeros(1, 1, height, width)
        with torch.no_grad():
            model(x, torch.zeros(1)) if takes_qp(model) else model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return macs / (height * width) / 1000
