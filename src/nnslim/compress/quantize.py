"""Weight quantization as in MPEG-NNR and Deep Compression, kept through fine-tuning.

Two kinds, each a parametrization on a layer's weight (see ``constraints``):

- Uniform: symmetric, ``bits`` bits, one scale per tensor or per output channel. ``FakeQuant``
  rounds the weight on every forward and passes the gradient straight through to the float
  shadow weight (quantization-aware fine-tuning).
- Shared weights (Deep Compression): the non-zero weights of a layer are clustered by 1-D k-means
  into 2**bits centroids; ``SharedWeights`` computes the weight from the centroids and the
  fixed cluster indices, so weights in one cluster stay equal while the centroids are fine-tuned.

Zeros (pruned weights) stay exactly zero under both. The metadata the registering functions
return describes the layers when they were registered; fine-tuning moves scales and centroids,
so read the final codebooks with ``codebook_table`` after ``finalize``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from nnslim.compress.constraints import parametrizations_of
from nnslim.compress.sparsity import prunable_weights
from nnslim.errors import NnslimError

UNIFORM_BITS = range(2, 17)
SHARED_BITS = range(1, 17)


def _check_bits(bits: int, allowed: range, what: str) -> None:
    if bits not in allowed:
        raise NnslimError(f"{what} takes {allowed.start} to {allowed.stop - 1} bits, got {bits}")


def _uniform(weight: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantized values and the scale (per channel: shaped to broadcast along dim 0)."""
    levels = 2 ** (bits - 1) - 1
    magnitude = weight.abs()
    if per_channel:
        peak = magnitude.reshape(weight.shape[0], -1).amax(dim=1).reshape(-1, *[1] * (weight.dim() - 1))
    else:
        peak = magnitude.max()
    scale = torch.where(peak > 0, peak / levels, torch.ones_like(peak))
    return torch.clamp(torch.round(weight / scale), -levels, levels) * scale, scale


def uniform(weight: torch.Tensor, bits: int, per_channel: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """Symmetric uniform quantization: scale = max|w| / (2^(bits-1) - 1), integers clamped to +-that.

    Args:
        weight: The float weight.
        bits: Bits per integer, 2 to 16.
        per_channel: One scale per output channel (dim 0) instead of one for the tensor.

    Returns:
        The dequantized weight, every value exactly scale * integer, and the metadata
        ``{"kind": "uniform", "bits", "per_channel", "scale": list of floats}``. An all-zero
        tensor or channel gets scale 1.

    Raises:
        NnslimError: Bits out of range, or per-channel quantization of a scalar.
    """
    _check_bits(bits, UNIFORM_BITS, "uniform quantization")
    if per_channel and weight.dim() == 0:
        raise NnslimError("per-channel quantization needs a weight with an output-channel dimension")
    values, scale = _uniform(weight.detach(), bits, per_channel)
    return values, {"kind": "uniform", "bits": bits, "per_channel": per_channel, "scale": scale.flatten().tolist()}


def _nearest(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids, for each value."""
    return torch.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)


def _lloyd(values: torch.Tensor, centroids: torch.Tensor, iterations: int) -> torch.Tensor:
    """Lloyd iterations from sorted centroids; an empty cluster keeps its centroid (they stay sorted in 1-D)."""
    for _ in range(iterations):
        assignment = _nearest(values, centroids)
        counts = torch.bincount(assignment, minlength=centroids.numel())
        sums = torch.zeros_like(centroids).index_add_(0, assignment, values)
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.equal(updated, centroids):
            break
        centroids = updated
    return centroids


def kmeans(weight: torch.Tensor, clusters: int, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means of a weight's non-zero values with linear initialisation (Deep Compression).

    Centroids start evenly spaced between the smallest and largest non-zero weight, then Lloyd
    iterations run (on the CPU, in float64, so the result is deterministic). Zeros are pruned
    weights: they are not clustered and stay exactly zero. When there are no more distinct
    non-zero values than clusters, the centroids are those values and the result is lossless.

    Args:
        weight: The weight.
        clusters: The most centroids, at least 1.
        iterations: The most Lloyd iterations; they stop early once the centroids settle.

    Returns:
        The centroids that some weight uses, sorted ascending, shape (k,) with k <= clusters, in
        the weight's dtype and device; and int64 indices shaped like the weight, -1 for a zero
        weight, so that the weight is ``cat([0], centroids)[indices + 1]``.

    Raises:
        NnslimError: Fewer than 1 cluster or a negative number of iterations.
    """
    if clusters < 1 or iterations < 0:
        raise NnslimError(f"k-means needs clusters >= 1 and iterations >= 0, got {clusters} and {iterations}")
    values = weight.detach().cpu().double()
    nonzero = values[values != 0]
    distinct = torch.unique(nonzero)
    if distinct.numel() <= clusters:
        centroids = distinct
    else:
        start = torch.linspace(float(distinct[0]), float(distinct[-1]), clusters, dtype=torch.float64)
        centroids = _lloyd(nonzero, start, iterations)
        centroids = centroids[torch.bincount(_nearest(nonzero, centroids), minlength=clusters) > 0]
    centroids = centroids.to(weight.dtype).double()
    indices = torch.where(values != 0, _nearest(values, centroids), -1)
    return centroids.to(device=weight.device, dtype=weight.dtype), indices.to(weight.device)


class FakeQuant(nn.Module):
    """A parametrization that quantizes a weight uniformly on every forward, with a straight-through gradient.

    The forward value is exactly the quantized weight; the gradient reaches the float shadow
    weight unchanged, as if rounding were the identity.
    """

    def __init__(self, bits: int, per_channel: bool) -> None:
        super().__init__()
        _check_bits(bits, UNIFORM_BITS, "uniform quantization")
        self.bits = bits
        self.per_channel = per_channel

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        quantized, _ = _uniform(weight.detach(), self.bits, self.per_channel)
        return (weight - weight.detach()) + quantized


class SharedWeights(nn.Module):
    """A parametrization whose weight is ``cat([0], centroids)[indices + 1]``: shared values, zeros kept.

    The centroids are a parameter and the indices a buffer; the float weight it replaces gets no
    gradient. Autograd sums, into each centroid, the gradients of all the weights that use it:
    that sum is exactly Deep Compression's centroid fine-tuning update, with no extra code.
    """

    indices: torch.Tensor

    def __init__(self, centroids: torch.Tensor, indices: torch.Tensor) -> None:
        super().__init__()
        self.centroids = nn.Parameter(centroids.detach().clone())
        self.register_buffer("indices", indices.detach().clone())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.centroids.new_zeros(1), self.centroids])[self.indices + 1]


def _quantizable(model: nn.Module, layers: Iterable[str] | None) -> dict[str, nn.Conv2d | nn.Linear]:
    """The chosen Conv2d/Linear layers, refusing any that already carry a quantizer."""
    chosen = prunable_weights(model, layers)
    for name, layer in chosen.items():
        if any(isinstance(p, FakeQuant | SharedWeights) for p in parametrizations_of(layer)):
            raise NnslimError(f"{name} is already quantized; finalize the model before quantizing it again")
    return chosen


def share_weights(model: nn.Module, bits: int, layers: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Constrain each layer's weight to 2**bits shared values (k-means of its non-zero weights), in place.

    Args:
        model: The filter, pruned or not.
        bits: Bits per cluster index, 1 to 16.
        layers: Qualified names of Conv2d/Linear layers; all of them (inside SeparableConv2d too) when None.

    Returns:
        Per layer, ``{"kind": "kmeans", "bits", "centroids": list of floats}`` as registered.

    Raises:
        NnslimError: Bits out of range, a name that is not a Conv2d/Linear layer, or a layer already quantized.
    """
    _check_bits(bits, SHARED_BITS, "weight sharing")
    tables = {}
    for name, layer in _quantizable(model, layers).items():
        centroids, indices = kmeans(layer.weight, 2**bits)
        parametrize.register_parametrization(layer, "weight", SharedWeights(centroids, indices))
        tables[name] = {"kind": "kmeans", "bits": bits, "centroids": centroids.tolist()}
    return tables


def quantize_uniform(
    model: nn.Module, bits: int, per_channel: bool, layers: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Constrain each layer's weight to uniform quantization (``FakeQuant``), in place.

    Args:
        model: The filter, pruned or not.
        bits: Bits per integer, 2 to 16.
        per_channel: One scale per output channel instead of one per layer.
        layers: Qualified names of Conv2d/Linear layers; all of them (inside SeparableConv2d too) when None.

    Returns:
        Per layer, the metadata of ``uniform`` for the weight as registered.

    Raises:
        NnslimError: Bits out of range, a name that is not a Conv2d/Linear layer, or a layer already quantized.
    """
    _check_bits(bits, UNIFORM_BITS, "uniform quantization")
    tables = {}
    for name, layer in _quantizable(model, layers).items():
        tables[name] = uniform(layer.weight, bits, per_channel)[1]
        parametrize.register_parametrization(layer, "weight", FakeQuant(bits, per_channel))
    return tables


def codebook_table(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per layer, the codebook its weight is coded against: the sorted distinct non-zero values.

    Meant for a finalized model with shared or uniformly quantized weights.

    Args:
        model: The filter.
        layers: Qualified names of Conv2d/Linear layers; all of them when None.

    Returns:
        Per layer, ``{"centroids": sorted distinct non-zero values, "zeros": number of zero weights}``.

    Raises:
        NnslimError: A name that is not a Conv2d/Linear layer.
    """
    tables = {}
    for name, layer in prunable_weights(model, layers).items():
        weight = layer.weight.detach()
        tables[name] = {"centroids": torch.unique(weight[weight != 0]).tolist(), "zeros": int((weight == 0).sum())}
    return tables
