"""Routing by agreement between capsules, applied as per-synapse gains."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ncp_core.adapt import run_with_gains
from ncp_core.errors import WiringError
from ncp_core.wiring import _check_size
from ncp_wiring_routing._wiring import DynamicRouting

__all__ = ["CapsuleRouting", "squash"]


def squash(s: mx.array, axis: int = -1, epsilon: float = 1e-7) -> mx.array:
    r"""The capsule non-linearity ``squash(s) = |s|² / (1 + |s|²) · s / |s|``."""
    squared = mx.sum(mx.square(s), axis=axis, keepdims=True)
    return s * (squared / (1.0 + squared)) / mx.sqrt(squared + epsilon)


# XXX: `ncp train` builds its models itself, so it trains this wiring unrouted;
# it needs a hook through which a wiring wraps the model it trains.
class CapsuleRouting(nn.Module):
    r"""A wired LTC or CfC on a :class:`DynamicRouting` wiring, routed by
    agreement at every step.

    Before each step, from the state ``h`` ``(B, N)``: the primary capsules'
    poses ``u_i = squash(h[primary_i])`` ``(B, I, D)`` make predictions for
    each output capsule, ``û_{j|i} = W_{ij} u_i`` (``W`` a trained
    ``(I, J, E, D)`` array). With the output capsules' own states as the
    first estimate, ``v_j ← squash(h[output_j])``, and ``b_ij ← 0``, each of
    the ``R`` routing iterations does

    .. math::

        b_{ij} \leftarrow b_{ij} + \hat u_{j|i} \cdot v_j, \qquad
        c_{ij} = \frac{e^{b_{ij}}}{\sum_k e^{b_{ik}}}, \qquad
        v_j \leftarrow \operatorname{squash}\Big(\sum_i c_{ij} \hat u_{j|i}\Big)

    so a primary capsule whose prediction agrees with an output capsule
    couples more strongly to it. The coefficients, per sample, gate the
    network's synapses for that step: every synapse from a neuron of capsule
    ``i`` to a neuron of capsule ``j`` is scaled by ``J · c_ij`` (so uniform
    coupling, ``R = 0``, is the plain network); other synapses are unchanged.
    Gradients flow through the routing into ``W`` and into everything
    upstream (:func:`ncp_core.adapt.run_with_gains`).

    For inputs ``BLF`` returns ``(BLM, BN)``: the motor outputs at every
    step (the output capsules' neurons) and the final state.

    Args:
        model (LTC | CfC): A batch-first sequence module built on a
            :class:`DynamicRouting` wiring, without mixed memory.
        iterations (int, optional): ``R``. Default: the wiring's
            ``routing_iterations``.
    """

    def __init__(self, model: nn.Module, iterations: int | None = None) -> None:
        super().__init__()
        wiring = getattr(model, "wiring", None)
        if not isinstance(wiring, DynamicRouting):
            raise WiringError(
                f"CapsuleRouting needs a model built on a 'dynamic_routing' wiring, "
                f"got {wiring!r}"
            )
        self.model = model
        self.iterations = _check_size(
            "iterations",
            wiring.routing_iterations if iterations is None else iterations,
            minimum=0,
        )
        primary, output = wiring.primary_capsule_ids, wiring.output_capsule_ids
        (count, dim), (outputs, out_dim) = primary.shape, output.shape
        self.prediction = mx.random.normal((count, outputs, out_dim, dim)) / math.sqrt(
            dim
        )
        self._primary = mx.array(primary.astype(np.int32))
        self._output = mx.array(output.astype(np.int32))
        source = np.zeros(wiring.units, np.int32)
        target = np.zeros(wiring.units, np.int32)
        for i, ids in enumerate(primary):
            source[ids] = i
        for j, ids in enumerate(output):
            target[ids] = j
        self._source_capsule = mx.array(source)
        self._target_capsule = mx.array(target)
        self._routed = mx.array(wiring.routed_synapses())

    @property
    def wiring(self) -> DynamicRouting:
        return self.model.wiring

    def predictions(self, h: mx.array) -> mx.array:
        """``û_{j|i}`` ``(B, I, J, E)`` from the state ``(B, N)``."""
        poses = squash(mx.take(h, self._primary, axis=1))
        return mx.einsum("bid,ijed->bije", poses, self.prediction)

    def coefficients(self, h: mx.array) -> mx.array:
        """Coupling coefficients ``c_ij`` ``(B, I, J)`` for the state ``(B, N)``."""
        votes = self.predictions(h)
        v = squash(mx.take(h, self._output, axis=1))
        logits = mx.zeros(votes.shape[:3])
        for _ in range(self.iterations):
            logits = logits + mx.sum(votes * v[:, None], axis=-1)
            c = mx.softmax(logits, axis=2)
            v = squash(mx.sum(c[..., None] * votes, axis=1))
        return mx.softmax(logits, axis=2)

    def gains(self, h: mx.array) -> mx.array:
        """``(B, N, N)`` per-synapse gains: ``J · c_ij`` on the routed synapses."""
        scaled = self.coefficients(h) * self.wiring.output_capsules
        per_pair = mx.take(
            mx.take(scaled, self._source_capsule, axis=1), self._target_capsule, axis=2
        )
        return mx.where(self._routed, per_pair, 1.0)

    def __call__(self, x: Any, hx: Any = None) -> tuple[mx.array, mx.array]:
        return run_with_gains(self.model, x, self.gains, hx)
