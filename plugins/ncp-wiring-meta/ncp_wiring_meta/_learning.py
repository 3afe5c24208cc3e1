"""First-order MAML over a meta wiring, and the sine-wave few-shot tasks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_map

from ncp_core.adapt import synapse_parameter_mask
from ncp_core.errors import ModelError
from ncp_core.wiring import NeuronSelector

__all__ = ["FirstOrderMAML", "sine_task", "sine_tasks"]

Batch = Sequence[Any]


class FirstOrderMAML:
    r"""First-order MAML whose inner loop adapts only a group's synapses.

    With ``θ`` every trainable parameter and ``m`` the 0/1 mask of the
    parameters of the synapses into ``targets`` (the fast group,
    :func:`ncp_core.adapt.synapse_parameter_mask`), a task with a support
    batch ``S`` and a query batch ``Q`` is learned in ``K`` inner steps

    .. math::

        θ_0 = θ, \qquad θ_{k+1} = θ_k - α\, m ⊙ ∇_θ L_S(θ_k)

    and the meta-gradient is taken first-order, at the adapted parameters
    (Finn et al. 2017, FOMAML): ``g = ∇_θ L_Q(θ_K)``, averaged over the
    tasks of a meta-batch and handed to ``optimizer`` for every parameter,
    slow and fast. First-order MAML rather than Reptile because Reptile's
    outer step ``θ ← θ + ε(θ_K − θ)`` would only ever move the parameters
    the inner loop moves, and the slow group must learn across tasks.

    Args:
        model (nn.Module): The model; its wiring must name ``targets``.
        loss_fn (callable): ``loss_fn(model, *batch)`` returning a scalar.
        inner_lr (float): ``α``. Default: ``0.01``.
        inner_steps (int): ``K``. Default: ``5``.
        optimizer (mlx.optimizers.Optimizer, optional): The outer optimizer.
            Default: Adam with learning rate ``1e-3``.
        targets (str | ids): Neurons whose incoming synapses adapt per task.
            Default: ``"fast"``.
        neuron_parameters (bool): Adapt the target neurons' own parameters
            (biases, leak) too. Default: ``False``.
        compile (bool): Compile the inner step and the meta-gradient.
            Default: ``True``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., mx.array],
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        optimizer: optim.Optimizer | None = None,
        targets: NeuronSelector = "fast",
        neuron_parameters: bool = False,
        compile: bool = True,
    ) -> None:
        if not inner_lr > 0:
            raise ModelError(f"inner_lr must be positive, got {inner_lr!r}")
        if (
            isinstance(inner_steps, bool)
            or not isinstance(inner_steps, int)
            or (inner_steps < 0)
        ):
            raise ModelError(
                f"inner_steps must be a non-negative integer, got {inner_steps!r}"
            )
        self.model = model
        self.loss_fn = loss_fn
        self.inner_lr = float(inner_lr)
        self.inner_steps = inner_steps
        self.optimizer = optimizer or optim.Adam(learning_rate=1e-3)
        self.mask = synapse_parameter_mask(
            model, targets, neuron_parameters=neuron_parameters
        )
        loss_and_grad = nn.value_and_grad(model, loss_fn)
        rate = self.inner_lr

        def inner(*batch: Any) -> mx.array:
            loss, grads = loss_and_grad(model, *batch)
            model.update(
                tree_map(
                    lambda p, g, m: p - rate * m * g,
                    model.trainable_parameters(),
                    grads,
                    self.mask,
                )
            )
            return loss

        def meta_gradient(*batch: Any) -> tuple[mx.array, Any]:
            return loss_and_grad(model, *batch)

        if compile:
            inner = mx.compile(inner, inputs=model.state, outputs=model.state)
            meta_gradient = mx.compile(meta_gradient, inputs=model.state)
        self._inner = inner
        self._meta_gradient = meta_gradient

    def adapt(self, support: Batch, steps: int | None = None) -> list[float]:
        """Adapt the model in place to one task: ``steps`` inner steps.

        Returns the support loss before each step. Save
        ``model.parameters()`` first to undo it (``model.update(saved)``).
        """
        losses = []
        for _ in range(self.inner_steps if steps is None else steps):
            loss = self._inner(*support)
            mx.eval(loss, self.model.parameters())
            losses.append(float(np.array(loss)))
        return losses

    def meta_step(self, tasks: Sequence[tuple[Batch, Batch]]) -> float:
        """One outer update from ``(support, query)`` tasks; the mean query
        loss after adaptation."""
        if not tasks:
            raise ModelError("meta_step needs at least one (support, query) task")
        start = self.model.trainable_parameters()
        total: Any = None
        query_loss = 0.0
        for support, query in tasks:
            self.model.update(start)
            self.adapt(support)
            loss, grads = self._meta_gradient(*query)
            total = grads if total is None else tree_map(mx.add, total, grads)
            mx.eval(loss, total)
            query_loss += float(np.array(loss))
        self.model.update(start)
        scale = 1.0 / len(tasks)
        self.optimizer.update(self.model, tree_map(lambda g: g * scale, total))
        mx.eval(self.model.parameters(), self.optimizer.state)
        return query_loss / len(tasks)


def sine_task(
    rng: np.random.Generator,
    shots: int,
    queries: int = 0,
    steps: int = 1,
) -> tuple[tuple[mx.array, mx.array], tuple[mx.array, mx.array], tuple[float, float]]:
    """One task of the sine-wave few-shot benchmark (Finn et al. 2017).

    ``y = A sin(x − φ)`` with ``A ~ U(0.1, 5)``, ``φ ~ U(0, π)``, ``x ~
    U(−5, 5)``. Each point is its own sequence, ``x`` held for ``steps``
    steps: inputs ``(K, steps, 1)``, targets ``(K, 1)`` (read at the last
    step).

    Returns:
        ``(support, query, (A, φ))``: ``shots`` support points and
        ``queries`` query points (``queries=0``: the query is the support).
    """
    amplitude = rng.uniform(0.1, 5.0)
    phase = rng.uniform(0.0, np.pi)

    def points(count: int) -> tuple[mx.array, mx.array]:
        x = rng.uniform(-5.0, 5.0, count).astype(np.float32)
        y = (amplitude * np.sin(x - phase)).astype(np.float32)
        inputs = np.repeat(x[:, None, None], steps, axis=1)
        return mx.array(inputs), mx.array(y[:, None])

    support = points(shots)
    query = points(queries) if queries else support
    return support, query, (float(amplitude), float(phase))


def sine_tasks(
    rng: np.random.Generator,
    count: int,
    shots: int,
    queries: int = 0,
    steps: int = 1,
) -> list[tuple[tuple[mx.array, mx.array], tuple[mx.array, mx.array]]]:
    """``count`` tasks of :func:`sine_task` as ``(support, query)`` pairs."""
    return [sine_task(rng, shots, queries, steps)[:2] for _ in range(count)]
