"""Synapse kernels: the conductance-based synaptic currents of an LTC layer.

For presynaptic potentials ``u_i`` and every synapse ``i → j`` of a wiring,

.. math::

    a_{ij} = w_{ij}\\,\\sigma\\big(\\sigma_{ij} (u_i - \\mu_{ij})\\big), \\qquad
    I^{num}_j = \\sum_i a_{ij} E_{ij}, \\qquad I^{den}_j = \\sum_i a_{ij}

Two kernels compute the same sums:

- ``"dense"``: masked ``(P, N)`` parameter matrices and a ``(R, P, N)``
  activation tensor summed over the sources, as the reference does. Best for
  small or dense wirings.
- ``"sparse"``: an edge list sorted by target. Potentials are gathered by
  source and the per-synapse activations summed into their targets (segment
  sums on the CPU, scatter-adds elsewhere). Nothing of size ``R × P × N`` is
  formed. Its arrays are *neuron-major*: ``(P, R)`` in, ``(N, R)`` out, so
  that gathers and sums move whole rows.

Parameters always live in the dense ``(P, N)`` layout, so both kernels load
the same weights; the sparse kernel gathers the per-synapse values once per
call (:func:`sparse_synapses`), never inside the ODE unfolds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

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
    "segmented_by_default",
    "sigmoid",
    "sparse_currents",
    "sparse_synapses",
]

KERNELS = ("dense", "sparse")

SPARSE_MIN_UNITS = 32
SPARSE_MAX_DENSITY = 0.5


def choose_kernel(wiring: Any) -> str:
    """The synapse kernel that ``kernel="auto"`` uses for ``wiring``.

    Sparse from :data:`SPARSE_MIN_UNITS` neurons on when fewer than
    :data:`SPARSE_MAX_DENSITY` of the possible synapses exist, dense otherwise.
    """
    # XXX: a first guess, to be tuned on a benchmark. Measured on one CPU core
    # (AutoNCP, batch 16): dense wins at 16 units, sparse from about 24.
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
        return cast(mx.array, _fast_sigmoid(x))
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
        name: mx.contiguous(mx.broadcast_to(getattr(synapses, name), shape))
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
    """Per-synapse parameters ``(E, 1)`` (or ``(E, R)`` once broadcast) and
    the edge list of :func:`edge_index`."""

    w: mx.array
    sigma: mx.array
    mu: mx.array
    erev: mx.array
    edges: dict[str, mx.array]


def _segments(sorted_ids: np.ndarray, count: int) -> np.ndarray:
    """``(count, 2)`` uint32 ``[start, stop)`` of each id in a sorted id array."""
    ids = np.arange(count)
    starts = np.searchsorted(sorted_ids, ids, side="left")
    stops = np.searchsorted(sorted_ids, ids, side="right")
    return np.stack([starts, stops], axis=1).astype(np.uint32)


def edge_index(mask: np.ndarray) -> dict[str, mx.array]:
    """Edge list of the nonzero entries of a ``(P, N)`` matrix, sorted by target.

    Returns, for the ``E`` synapses: int32 ``source`` and ``target``, ``flat``
    (``source · N + target``, the entry's position in the flattened matrix),
    ``target_segments`` (``(N, 2)`` range of each target's synapses),
    ``by_source`` (the permutation that sorts the synapses by source) and
    ``source_segments`` (``(P, 2)`` ranges in that order).
    """
    mask = np.asarray(mask)
    sources, targets = mask.shape
    target, source = (axis.astype(np.int32) for axis in np.nonzero(mask.T))
    flat = source.astype(np.int64) * targets + target
    by_source = np.argsort(source, kind="stable").astype(np.int32)
    return {
        "source": mx.array(source),
        "target": mx.array(target),
        "flat": mx.array(flat.astype(np.int32)),
        "target_segments": mx.array(_segments(target, targets)),
        "by_source": mx.array(by_source),
        "source_segments": mx.array(_segments(source[by_source], sources)),
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
        edges=edges,
    )


# On the CPU, MLX's scatter-add costs several times a gather. There the sums
# over each target's synapses (contiguous, the edges being sorted by target)
# are a segmented matrix product with a column of ones, and the gradient of
# the gather by source is the same sum over the edges sorted by source.


def _segment_sum_rows(x: mx.array, segments: mx.array) -> mx.array:
    """``(S, R)`` sums of the rows of ``x`` ``(E, R)`` over ``[start, stop)``."""
    ones = mx.ones((x.shape[0], 1), dtype=x.dtype)
    return mx.segmented_mm(x.T, ones, segments)[:, :, 0]


@mx.custom_function
def _sum_by_target(x: mx.array, target: mx.array, segments: mx.array) -> mx.array:
    return _segment_sum_rows(x, segments)


@_sum_by_target.vjp
def _sum_by_target_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> Any:
    _, target, segments = primals
    grad = mx.take(cotangent, target, axis=0)
    return grad, mx.zeros_like(target), mx.zeros_like(segments)


@mx.custom_function
def _gather_by_source(
    u: mx.array, source: mx.array, by_source: mx.array, segments: mx.array
) -> mx.array:
    return mx.take(u, source, axis=0)


@_gather_by_source.vjp
def _gather_by_source_vjp(primals: Any, cotangent: mx.array, output: Any) -> Any:
    _, source, by_source, segments = primals
    grad = _segment_sum_rows(mx.take(cotangent, by_source, axis=0), segments)
    return (
        grad,
        mx.zeros_like(source),
        mx.zeros_like(by_source),
        mx.zeros_like(segments),
    )


HAS_SEGMENTED_MM = hasattr(mx, "segmented_mm")


def segmented_by_default() -> bool:
    """Whether :func:`sparse_currents` sums by segments on the current device."""
    return HAS_SEGMENTED_MM and mx.default_device().type == mx.DeviceType.cpu


def sparse_currents(
    synapses: SparseSynapses,
    u: mx.array,
    targets: int,
    segmented: bool | None = None,
) -> tuple[mx.array, mx.array]:
    """``(I^num, I^den)``, each ``(N, R)``, for neuron-major ``u`` ``(P, R)``.

    ``segmented`` picks segment sums (fast on the CPU) or scatter-adds (fast
    on a GPU); default: :func:`segmented_by_default`.
    """
    if segmented is None:
        segmented = segmented_by_default()
    edges = synapses.edges
    if edges["source"].size == 0:
        zeros = mx.zeros((targets, u.shape[1]), dtype=u.dtype)
        return zeros, zeros

    if segmented:
        presynaptic = cast(
            mx.array,
            _gather_by_source(
                u, edges["source"], edges["by_source"], edges["source_segments"]
            ),
        )
    else:
        presynaptic = mx.take(u, edges["source"], axis=0)
    activation = synapses.w * sigmoid(synapses.sigma * (presynaptic - synapses.mu))
    current = activation * synapses.erev

    if segmented:
        segments = edges["target_segments"]
        numerator = _sum_by_target(current, edges["target"], segments)
        denominator = _sum_by_target(activation, edges["target"], segments)
        return cast(mx.array, numerator), cast(mx.array, denominator)
    zeros = mx.zeros((targets, u.shape[1]), dtype=u.dtype)
    numerator = zeros.at[edges["target"]].add(current)
    denominator = zeros.at[edges["target"]].add(activation)
    return numerator, denominator
