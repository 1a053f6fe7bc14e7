"""Low-rank separable kernels (Tai et al. 2016), the low-rank tool of the MPEG-NNR use case.

A d x d convolution N <- C becomes a d x 1 convolution K <- C followed by a 1 x d convolution
N <- K. With the weight W (N, C, d, d) rearranged as M[(c, h), (n, w)] = W[n, c, h, w], the best
such pair in Frobenius norm is the truncated SVD of M (Tai et al.'s closed-form solution): the
vertical filters are U[:, k] sqrt(s_k) and the horizontal ones V[:, k] sqrt(s_k). Costs drop from
N C d^2 to K (C + N) d multiplies per pixel; at full rank the split reproduces the convolution exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.errors import NnslimError
from nnslim.models.layers import SeparableConv2d

ENERGY_LOW = 0.5
ENERGY_HIGH = 1.0


def _padding(conv: nn.Conv2d, name: str) -> int:
    """The one integer zero padding of a square, stride-1 convolution."""
    d = conv.kernel_size[0]
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        if d % 2 == 0:
            raise NnslimError(f"{name}: 'same' padding of an even kernel ({d}) is asymmetric; cannot split it")
        return (d - 1) // 2
    rows, cols = padding
    if rows != cols:
        raise NnslimError(f"{name}: padding {padding} differs between rows and columns; cannot split it")
    return int(rows)


def _check(conv: nn.Conv2d, name: str) -> int:
    """Refuse a convolution that has no exact separable form; return its padding."""
    if not isinstance(conv, nn.Conv2d):
        raise NnslimError(f"{name} is a {type(conv).__name__}, not a Conv2d")
    rows, cols = conv.kernel_size
    problems = {
        f"kernel {rows}x{cols} is not square": rows != cols,
        "a 1x1 kernel has nothing to split": rows == cols == 1,
        f"stride {conv.stride} is not 1": tuple(conv.stride) != (1, 1),
        f"dilation {conv.dilation} is not 1": tuple(conv.dilation) != (1, 1),
        f"groups={conv.groups} is not 1": conv.groups != 1,
        f"padding mode {conv.padding_mode!r} is not zeros": conv.padding_mode != "zeros",
    }
    for problem, present in problems.items():
        if present:
            raise NnslimError(f"{name}: cannot split into separable kernels: {problem}")
    return _padding(conv, name)


def _matrix(conv: nn.Conv2d) -> torch.Tensor:
    """M[(c, h), (n, w)] = W[n, c, h, w], in float64."""
    n, c, d, _ = conv.weight.shape
    return conv.weight.detach().double().permute(1, 2, 0, 3).reshape(c * d, n * d)


def singular_values(conv: nn.Conv2d, *, name: str = "convolution") -> torch.Tensor:
    """The singular values of a convolution's rearranged weight, largest first (float64).

    Args:
        conv: A square, stride-1, undilated, ungrouped convolution.
        name: How error messages call the layer.

    Raises:
        NnslimError: A convolution that cannot be split.
    """
    _check(conv, name)
    return torch.linalg.svdvals(_matrix(conv))


def rank_for_energy(conv: nn.Conv2d, energy: float, *, name: str = "convolution") -> int:
    """The smallest rank whose squared singular values keep at least ``energy`` of their sum.

    Args:
        conv: A convolution that can be split.
        energy: Fraction in (0, 1]; 1 keeps every singular value.
        name: How error messages call the layer.

    Raises:
        NnslimError: An energy out of range, or a convolution that cannot be split.
    """
    if not 0.0 < energy <= 1.0:
        raise NnslimError(f"energy must be in (0, 1], got {energy}")
    squares = singular_values(conv, name=name) ** 2
    total = squares.sum()
    if total == 0:
        return 1
    kept = torch.cumsum(squares, 0) / total
    return min(int(torch.searchsorted(kept, torch.tensor([energy], dtype=kept.dtype))) + 1, squares.numel())


def _check_rank(conv: nn.Conv2d, rank: int, name: str) -> None:
    n, c, d, _ = conv.weight.shape
    full = min(c * d, n * d)
    if not 1 <= rank <= full:
        raise NnslimError(f"{name}: rank must be from 1 to {full}, got {rank}")


def decompose(conv: nn.Conv2d, rank: int, *, name: str = "convolution") -> SeparableConv2d:
    """Split a d x d convolution into a d x 1 then a 1 x d one of ``rank`` channels between (closed-form SVD).

    Args:
        conv: A square, stride-1, undilated, ungrouped convolution with zero padding.
        rank: K, from 1 to min(C d, N d); the maximum reproduces the convolution exactly.
        name: How error messages call the layer.

    Returns:
        A SeparableConv2d with the convolution's bias on its horizontal part, on the conv's device and dtype.

    Raises:
        NnslimError: A convolution that cannot be split, or a rank out of range.
    """
    padding = _check(conv, name)
    _check_rank(conv, rank, name)
    n, c, d, _ = conv.weight.shape
    u, s, vh = torch.linalg.svd(_matrix(conv), full_matrices=False)
    root = s[:rank].sqrt()
    vertical = (u[:, :rank] * root).T.reshape(rank, c, d, 1)
    horizontal = (vh[:rank] * root[:, None]).reshape(rank, n, 1, d).transpose(0, 1)
    split = SeparableConv2d(c, rank, n, d, padding, conv.bias is not None)
    split = split.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        split.vertical.weight.copy_(vertical)
        split.horizontal.weight.copy_(horizontal)
        if conv.bias is not None and split.horizontal.bias is not None:
            split.horizontal.bias.copy_(conv.bias)
    return split


def _conv(model: nn.Module, name: str) -> nn.Conv2d:
    """The plain Conv2d a model has under that name."""
    module = dict(model.named_modules()).get(name) if name else None
    if module is None:
        raise NnslimError(f"the model has no layer named {name!r}")
    if parametrize.is_parametrized(module):
        raise NnslimError(f"{name} carries weight constraints; finalize the model before splitting it")
    if type(module) is not nn.Conv2d:
        raise NnslimError(f"{name} is a {type(module).__name__}, not a plain Conv2d")
    return module


def saves(conv: nn.Conv2d, rank: int) -> bool:
    """Whether a split of this rank holds fewer weights (so fewer MACs per pixel) than the kernel.

    That is K (C + N) d < N C d^2 for a d x d kernel N <- C.
    """
    n, c, d, _ = conv.weight.shape
    return rank * (c + n) * d < n * c * d * d


def apply_lowrank(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """A deep copy of the model with each named convolution replaced by its separable split.

    A convolution whose split at the given rank would hold as many weights as the kernel or more
    is left alone: a split never enlarges a layer.

    Args:
        model: The filter; left unchanged.
        ranks: Rank per qualified layer name.

    Raises:
        NnslimError: A name that is not a plain Conv2d, a convolution that cannot be split, or a bad rank.
    """
    result = copy.deepcopy(model)
    for name, rank in ranks.items():
        conv = _conv(result, name)
        _check_rank(conv, rank, name)
        if not saves(conv, rank):
            continue
        split = decompose(conv, rank, name=name)
        parent, _, attr = name.rpartition(".")
        setattr(result.get_submodule(parent), attr, split)
    return result


def ranks_for_energy(model: nn.Module, layer_names: Iterable[str], energy: float) -> dict[str, int]:
    """Per named convolution, the smallest rank that keeps ``energy`` of its squared singular values.

    Raises:
        NnslimError: A name that is not a plain, splittable Conv2d, or an energy out of (0, 1].
    """
    return {name: rank_for_energy(_conv(model, name), energy, name=name) for name in layer_names}


def ranks_for_loss(
    model: nn.Module,
    layer_names: Iterable[str],
    measure: Callable[[nn.Module], float],
    max_loss: float,
    iterations: int = 12,
) -> dict[str, int]:
    """Ranks from the lowest shared energy fraction whose split filter loses at most ``max_loss`` dB.

    Bisects the energy between 0.5 and 1.0 (which keeps every singular value, an exact split, so
    it is accepted without measuring). Energies that give the same ranks are measured once.

    Args:
        model: The filter; left unchanged.
        layer_names: The convolutions to split.
        measure: Quality of a filter in dB, higher is better (e.g. PSNR on a validation set).
        max_loss: The largest acceptable measure(model) - measure(split model), in dB.
        iterations: Bisection steps.

    Returns:
        Rank per layer name.

    Raises:
        NnslimError: A name that is not a plain, splittable Conv2d.
    """
    names = list(layer_names)
    reference = measure(model)
    verdicts: dict[tuple[int, ...], bool] = {}

    def acceptable(ranks: dict[str, int]) -> bool:
        key = tuple(ranks.values())
        if key not in verdicts:
            verdicts[key] = reference - measure(apply_lowrank(model, ranks)) <= max_loss
        return verdicts[key]

    low, high = ENERGY_LOW, ENERGY_HIGH
    cheapest = ranks_for_energy(model, names, low)
    if acceptable(cheapest):
        return cheapest
    for _ in range(iterations):
        middle = (low + high) / 2
        if acceptable(ranks_for_energy(model, names, middle)):
            high = middle
        else:
            low = middle
    return ranks_for_energy(model, names, high)
