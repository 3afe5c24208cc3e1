"""Synapse kernels: the conductance-based synaptic currents of an LTC layer.

For presynaptic potentials ``u_i`` and every synapse ``i → j`` of a wiring,

.. math::

    a_{ij} = w_{ij}\\,\\sigma\\big(\\sigma_{ij} (u_i - \\mu_{ij})\\big), \\qquad
    I^{num}_j = \\sum_i a_{ij} E_{ij}, \\qquad I^{den}_j = \\sum_i a_{ij}

Two kernels compute the same sums:

- ``"dense"``: masked ``(P, N)`` parameter matrices and a ``(R, P, N)``
  activation tensor summed over the sources, as the reference does. Best for
  small or dense wirings.
- ``"sparse"``: an edge list. Potentials are gathered by source, the
  per-synapse activations are scatter-added into their targets. Nothing of
  size ``R × P × N`` is formed. Its arrays are *neuron-major*: ``(P, R)`` in,
  ``(N, R)`` out, so that gathers and scatters move whole rows.

Parameters always live in the dense ``(P, N)`` layout, so both kernels load
the same weights; the sparse kernel gathers the per-synapse values once per
call (:func:`sparse_synapses`), never inside the ODE unfolds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx
import numpy as np

from ncp_core.errors import ModelError

__all__ = [
    "KERNELS",
    "DenseSynapses",
    "SparseSynapses",
    "broadcast_synapses",
    "choose_kernel",
    "dense_currents",
    "dense_synapses",
    "edge_index",
    "resolve_kernel",
    "sigmoid",
    "sparse_currents",
    "sparse_synapses",
]

KERNELS = ("dense", "sparse")

SPARSE_MIN_UNITS = 64
SPARSE_MAX_DENSITY = 0.5


def choose_kernel(wiring: Any) -> str:
    """The synapse kernel that ``kernel="auto"`` uses for ``wiring``.

    Sparse from :data:`SPARSE_MIN_UNITS` neurons on when fewer than
    :data:`SPARSE_MAX_DENSITY` of the possible synapses exist, dense otherwise.
    """
    # XXX: a first guess at the crossover; to be tuned on a benchmark.
    if wiring.units >= SPARSE_MIN_UNITS and wiring.density < SPARSE_MAX_DENSITY:
        return "sparse"
    return "dense"


def resolve_kernel(kernel: str, wiring: Any) -> str:
    """Check a ``kernel`` argument and turn ``"auto"`` into a kernel name."""
    if kernel == "auto":
        return choose_kernel(wiring)
    if kernel not in KERNELS:
        raise ModelError(
            f"unknown synapse kernel {kernel!r}; use 'auto', 'dense' or 'sparse'"
        )
    return kernel


# -- the logistic function -----------------------------------------------------

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 split in two so that n·ln2 is exact
_LN2_LO = 1.428606765330187e-06
# Horner coefficients of the degree-7 Taylor polynomial of exp: 1/7!, ..., 1/0!
_EXP_TAYLOR = (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0)


def _exp_by_range_reduction(x: mx.array) -> mx.array:
    """``exp(x)`` for float32 as ``2^n · p(r)``, ``|r| ≤ ln2/2`` (rel. error < 2e-7).

    Only multiplies, adds and integer shifts, which ``mx.compile`` fuses into
    one loop; MLX's own ``exp`` on the CPU costs several times more.
    """
    x = mx.clip(x, -87.0, 88.0)
    n = mx.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = r * _EXP_TAYLOR[0] + _EXP_TAYLOR[1]
    for coefficient in _EXP_TAYLOR[2:]:
        p = p * r + coefficient
    two_to_n = ((n.astype(mx.int32) + 127) << 23).view(mx.float32)
    return p * two_to_n


@mx.custom_function
def _fast_sigmoid(x: mx.array) -> mx.array:
    return 1.0 / (1.0 + _exp_by_range_reduction(-x))


@_fast_sigmoid.vjp
def _fast_sigmoid_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> mx.array:
    return cotangent * output * (1.0 - output)


def sigmoid(x: mx.array) -> mx.array:
    """The logistic function ``σ(x) = 1 / (1 + e^{-x})``.

    On the CPU a range-reduced polynomial (as accurate as ``mx.sigmoid``,
    absolute error below 1e-7, and several times faster there); elsewhere
    ``mx.sigmoid``.
    """
    if mx.default_device().type == mx.DeviceType.cpu:
        return _fast_sigmoid(x)
    return mx.sigmoid(x)


# -- dense kernel --------------------------------------------------------------


class DenseSynapses(NamedTuple):
    """Masked ``(P, N)`` synapse parameters; ``w`` already includes mask and gain."""

    w: mx.array
    sigma: mx.array
    mu: mx.array
    erev: mx.array


def dense_synapses(
    w: mx.array,
    sigma: mx.array,
    mu: mx.array,
    erev: mx.array,
    weight_scale: mx.array,
) -> DenseSynapses:
    """The dense kernel's synapses; ``weight_scale`` is mask × gain."""
    return DenseSynapses(w * weight_scale, sigma, mu, erev)


def broadcast_synapses(synapses: Any, rows: int) -> Any:
    """Synapse parameters broadcast over ``rows`` batch rows, once per call.

    The ODE uses the same parameters in every unfold of every step; broadcast
    there, each use would reduce its gradient over the batch. Broadcast
    once, the gradients of all uses are summed elementwise (which
    ``mx.compile`` fuses) and reduced a single time.
    """
    if isinstance(synapses, DenseSynapses):
        shape = (rows, *synapses.w.shape)
    else:
        shape = (synapses.w.shape[0], rows)
    fields = {
        name: mx.broadcast_to(getattr(synapses, name), shape)
        for name in ("w", "sigma", "mu", "erev")
    }
    return synapses._replace(**fields)


def dense_currents(synapses: DenseSynapses, u: mx.array) -> tuple[mx.array, mx.array]:
    """``(I^num, I^den)``, each ``(R, N)``, for potentials ``u`` of shape ``(R, P)``."""
    activation = synapses.w * sigmoid(synapses.sigma * (u[:, :, None] - synapses.mu))
    numerator = mx.sum(activation * synapses.erev, axis=1)
    denominator = mx.sum(activation, axis=1)
    return numerator, denominator


# -- sparse kernel -------------------------------------------------------------


class SparseSynapses(NamedTuple):
    """Per-synapse ``(E, 1)`` parameters and the ``(E,)`` edge list, by target."""

    w: mx.array
    sigma: mx.array
    mu: mx.array
    erev: mx.array
    source: mx.array
    target: mx.array


def edge_index(mask: np.ndarray) -> dict[str, mx.array]:
    """Edge list of the nonzero entries of a ``(P, N)`` matrix, sorted by target.

    Returns int32 ``source``, ``target`` and ``flat`` (``source · N + target``,
    the entry's position in the flattened matrix) arrays of length ``E``.
    """
    mask = np.asarray(mask)
    targets_first = np.nonzero(mask.T)
    target, source = (axis.astype(np.int32) for axis in targets_first)
    flat = source.astype(np.int64) * mask.shape[1] + target
    return {
        "source": mx.array(source),
        "target": mx.array(target),
        "flat": mx.array(flat.astype(np.int32)),
    }


def sparse_synapses(
    w: mx.array,
    sigma: mx.array,
    mu: mx.array,
    erev: mx.array,
    gains: mx.array,
    edges: dict[str, mx.array],
    positive: Callable[[mx.array], mx.array],
) -> SparseSynapses:
    """Gather the parameters of the synapses in ``edges`` once.

    ``positive`` (softplus or identity) is applied to the gathered weights
    only, so it costs ``E`` evaluations instead of ``P·N``.
    """
    flat = edges["flat"]

    def take(matrix: mx.array) -> mx.array:
        return mx.take(matrix.reshape(-1), flat)[:, None]

    return SparseSynapses(
        w=positive(take(w)) * take(gains),
        sigma=take(sigma),
        mu=take(mu),
        erev=take(erev),
        source=edges["source"],
        target=edges["target"],
    )


def sparse_currents(
    synapses: SparseSynapses, u: mx.array, targets: int
) -> tuple[mx.array, mx.array]:
    """``(I^num, I^den)``, each ``(N, R)``, for neuron-major ``u`` ``(P, R)``."""
    rows = u.shape[1]
    if synapses.source.size == 0:
        zeros = mx.zeros((targets, rows), dtype=u.dtype)
        return zeros, zeros
    presynaptic = mx.take(u, synapses.source, axis=0)
    activation = synapses.w * sigmoid(synapses.sigma * (presynaptic - synapses.mu))
    zeros = mx.zeros((targets, rows), dtype=u.dtype)
    numerator = zeros.at[synapses.target].add(activation * synapses.erev)
    denominator = zeros.at[synapses.target].add(activation)
    return numerator, denominator
