"""Weight constraints as parametrizations, and baking them in.

Pruning masks, fake quantization and shared weights are ``torch.nn.utils.parametrize``
parametrizations on a layer's ``weight``: the layer computes its weight from the constraint on
every forward, so any ordinary fine-tuning loop over ``model.parameters()`` keeps the constraint.
``finalize`` turns each constrained weight back into a plain parameter holding its constrained value.
"""

from __future__ import annotations

from typing import cast

from torch import nn
from torch.nn.utils import parametrize


def constrained_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules that carry at least one parametrization, by qualified name."""
    return {name: module for name, module in model.named_modules() if parametrize.is_parametrized(module)}


def parametrizations_of(module: nn.Module, tensor_name: str = "weight") -> list[nn.Module]:
    """The parametrizations on one of a module's tensors, applied first to last; empty when it has none."""
    if not parametrize.is_parametrized(module, tensor_name):
        return []
    return list(getattr(module.parametrizations, tensor_name))


def finalize(model: nn.Module) -> nn.Module:
    """Bake every parametrization into a plain parameter, in place.

    Returns:
        The model, whose constrained tensors now hold their constrained values and carry no parametrization.
    """
    for module in constrained_layers(model).values():
        for tensor_name in list(cast(nn.ModuleDict, module.parametrizations)):
            parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
    return model
