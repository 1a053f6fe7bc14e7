"""The stage registry: each recipe stage type and the handler that runs one step of it.

To add a stage: its frozen dataclass (with ``finetune`` and ``gentler``) and its ``KINDS`` name in
``nnslim.compress.recipe``, a module here with its handler (``(model, stage, progress, ctx) ->
StepOutcome``), and one line in ``HANDLERS``.
"""

from __future__ import annotations

from nnslim.compress.recipe import Iterate, LowRank, Prune, Quantize
from nnslim.compress.stages.common import Handler, Progress, StepOutcome
from nnslim.compress.stages.iterate import prune_round
from nnslim.compress.stages.lowrank import lowrank_step
from nnslim.compress.stages.prune import prune_step
from nnslim.compress.stages.quantize import quantize_step
from nnslim.errors import NnslimError

__all__ = ["HANDLERS", "Handler", "Progress", "StepOutcome", "handler_for"]

HANDLERS: dict[type, Handler] = {
    Iterate: prune_round,
    Prune: prune_step,
    LowRank: lowrank_step,
    Quantize: quantize_step,
}


def handler_for(stage: object) -> Handler:
    """The handler registered for a stage's type.

    Raises:
        NnslimError: No handler is registered for it.
    """
    handler = HANDLERS.get(type(stage))
    if handler is None:
        known = ", ".join(cls.__name__ for cls in HANDLERS)
        raise NnslimError(f"no handler for the stage type {type(stage).__name__}; known: {known}")
    return handler
