"""A compiled training step for LTC and CfC models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from ncp_core.cells import LTCCell

__all__ = ["make_train_step", "uses_native"]


def uses_native(model: nn.Module) -> bool:
    """Whether some cell of ``model`` runs on the native CPU kernels (on the
    current default device).

    Those kernels are C calls that ``mx.compile`` cannot trace (inside it the
    cells fall back to the MLX kernels), and they are faster than a compiled
    MLX step, so such models train best uncompiled. A module that says
    whether it runs natively (``uses_native``) speaks for its submodules: a
    sequence model with mixed memory keeps its cell on the MLX path.
    """
    if mx.default_device().type != mx.DeviceType.cpu:
        return False  # the native kernels are CPU code
    deciders = [
        name
        for name, module in model.named_modules()
        if hasattr(type(module), "uses_native")
    ]
    outermost = [
        name
        for name in deciders
        if not any(
            other != name and (other == "" or name.startswith(other + "."))
            for other in deciders
        )
    ]
    modules = dict(model.named_modules())
    return any(modules[name].uses_native for name in outermost)


def _constrained_cells(model: nn.Module) -> list[LTCCell]:
    """The LTC cells whose positive parameters are clipped after each update."""
    return [
        module
        for _, module in model.named_modules()
        if isinstance(module, LTCCell) and not module.implicit_param_constraints
    ]


def make_train_step(
    model: nn.Module,
    optimizer: optim.Optimizer,
    loss_fn: Callable[..., mx.array],
    compile: bool | str = "auto",
    average_gradients: Callable[[Any], Any] | None = None,
) -> Callable[..., mx.array]:
    """A function ``step(*batch) -> loss`` that updates ``model`` once.

    ``loss_fn(model, *batch)`` returns a scalar. The step computes the loss and
    its gradients, lets ``optimizer`` update the parameters, clips the
    positive LTC parameters of cells with explicit constraints
    (:meth:`~ncp_core.cells.LTCCell.apply_weight_constraints`) and evaluates
    the result.

    Compiled, the step's state is ``[model.state, optimizer.state,
    mx.random.state]``; ``model.state`` holds the wiring masks and synapse
    gains as well as the parameters, so changing them between steps (with
    ``set_wiring_masks`` or ``set_synapse_gains``) takes effect at the next
    call without rebuilding the step.

    Args:
        model (nn.Module): The model to train.
        optimizer (mlx.optimizers.Optimizer): Its optimizer.
        loss_fn (callable): ``loss_fn(model, *batch) -> scalar``.
        compile (bool | str): Compile with ``mx.compile``; ``"auto"``
            compiles unless the model runs on the native CPU kernels
            (:func:`uses_native`). Default: ``"auto"``.
        average_gradients (callable, optional): Applied to the gradient tree
            before the update; data-parallel runs pass
            :meth:`ncp_core.distributed.DataParallel.average_gradients` so
            every process applies the same combined gradient. Default: none.
    """
    loss_and_grad = nn.value_and_grad(model, loss_fn)
    constrained = _constrained_cells(model)

    def step(*batch: Any) -> mx.array:
        loss, grads = loss_and_grad(model, *batch)
        if average_gradients is not None:
            grads = average_gradients(grads)
        optimizer.update(model, grads)
        for cell in constrained:
            cell.apply_weight_constraints()
        return loss

    if compile == "auto":
        compile = not uses_native(model)
    if compile:
        # The state trees must be complete before tracing; init keeps any
        # optimizer state that already exists.
        optimizer.init(model.trainable_parameters())
        state = [model.state, optimizer.state, mx.random.state]
        step = mx.compile(step, inputs=state, outputs=state)

    def run(*batch: Any) -> mx.array:
        loss = step(*batch)
        mx.eval(loss, model.state, optimizer.state)
        return loss

    return run
