"""Synapse kernels: the conductance-based synaptic currents of an LTC layer.

For presynaptic potentials ``u_i`` and every synapse ``i → j`` of a wiring,

.. math::

    a_{ij} = w_{ij}\\,\\sigma\\big(\\sigma_{ij} (u_i - \\mu_{ij})\\big), \\qquad
    I^{num}_j = \\sum_i a_{ij} E_{ij}, \\qquad I^{den}_j = \\sum_i a_{ij}

Two kernels compute the same sums:

- ``"dense"``: masked ``(P, N)`` parameter matrices and a ``(R, P, N)``
  activation tensor summed over the sources, as the reference does. Best for
  small or dense wirings.
- ``"sparse"``: the synapses laid out by target in a padded *slot table*
  (:class:`SlotTable`): each target's incoming synapses fill rows of ``W``
  slots, so the sum into a target is a reshape and a sum over rows, never a
  scatter. Potentials are gathered by source. Nothing of size ``R × P × N``
  is formed. Arrays are *neuron-major*: ``(P, R)`` in, ``(N, R)`` out, slots
  ``(S, R)``.

Parameters always live in the dense ``(P, N)`` layout, so both kernels load
the same weights; the sparse kernel gathers the per-slot values once per call
(:func:`sparse_synapses`), never inside the ODE unfolds. The ODE of the
sparse kernel runs in :func:`sparse_solve`, whose gradient is written out by
hand: no scatter, no per-use reduction over the batch, and only the slot
logistics ``σ`` are kept per unfold.

On the CPU, MLX's ``exp``, ``tanh`` and ``sigmoid`` are scalar loops; the
logistic function and ``tanh`` here are built from operations that the CPU
compiler vectorises (see :func:`sigmoid`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import mlx.core as mx
import numpy as np

from ncp_core.errors import ModelError

__all__ = [
    "KERNELS",
    "DenseSynapses",
    "SlotTable",
    "SparseSynapses",
    "broadcast_synapses",
    "choose_kernel",
    "dense_currents",
    "dense_synapses",
    "edge_index",
    "resolve_kernel",
    "sigmoid",
    "sigmoid_values",
    "sparse_currents",
    "sparse_solve",
    "sparse_synapses",
    "tanh",
    "tanh_values",
]

KERNELS = ("dense", "sparse")

SPARSE_MIN_UNITS = 32
SPARSE_MAX_DENSITY = 0.5


def choose_kernel(wiring: Any) -> str:
    """The synapse kernel that ``kernel="auto"`` uses for ``wiring``.

    Sparse from :data:`SPARSE_MIN_UNITS` neurons on when fewer than
    :data:`SPARSE_MAX_DENSITY` of the possible synapses exist, dense otherwise.
    """
    # Measured on this project's 2-core CPU (AutoNCP, density 0.11-0.14):
    # training (batch 16, length 16, ms per step, dense/sparse) is 20/24 at
    # 12 units, 29/28 at 16, 46/30 at 24, 71/33 at 32, 96/35 at 48; one
    # inference step (batch 1, µs) is 224/591 at 12 units, 245/589 at 19,
    # 274/548 at 24, 343/446 at 32, 827/483 at 64. Sparse wins training
    # from ~16 units and single steps from ~40; 32 keeps small
    # controllers (19 units) dense for inference.
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


# -- the logistic function and tanh ---------------------------------------------
#
# Both come from 2^{-a} for a = |t| ≥ 0, written as p / T: T = 2^k with k the
# integer nearest to a (a clamped to 29), and p = 2^{-f} for f = a − k in
# [−½, ½], a degree-6 polynomial. T is assembled from its bits, so no exp,
# floor or variable shift is needed: every operation is one that g++
# vectorises in the kernels of mx.compile (MLX's own exp, tanh and sigmoid
# are scalar loops on the CPU, 12-16 ns an element). Then
# 1/(1 + 2^{-t}) = T/(T + p) for t ≥ 0 and p/(T + p) below: relative
# accuracy on both sides. Past |t| = 29 (|x| > 20.1 for σ(x)) the clamp
# leaves σ within 2e-9 of 0 or 1.
#
# The steps are also arranged for MLX's fusion, which cuts a fused kernel
# 11 operations deep: clamping (the first kernel, fused with whatever made
# t), the bits of T (a second one) and the rest (a third one) each fit.

_LOG2E = 1.4426950408889634
_MAX_EXPONENT = 29.0
_ROUND = 12582912.0  # 1.5 · 2^23: (a + _ROUND) − _ROUND rounds a to an integer
# 2^{-f} on [−½, ½]: a relative minimax fit, max relative error 1.9e-9 in
# exact arithmetic, 1.7e-7 evaluated in float32 by Estrin's scheme.
_EXP2_NEG = (
    1.0000000005536656,
    -0.6931472057140108,
    0.24022646892328767,
    -0.05550328826021172,
    0.009618488967644643,
    -0.0013399911844369132,
    0.00015345760488696204,
)


def _power_parts(clamped: mx.array) -> tuple[mx.array, mx.array]:
    """``(T, p)`` with ``2^{-|t|} = p / T`` for ``t`` clamped to ±29."""
    a = mx.abs(clamped)
    k = (a + _ROUND) - _ROUND
    two_k = ((k.astype(mx.int32) + 127) << 23).view(mx.float32)
    f = a - k
    c = _EXP2_NEG
    f2 = f * f
    low = (c[0] + c[1] * f) + f2 * (c[2] + c[3] * f)
    high = (c[4] + c[5] * f) + c[6] * f2
    return two_k, low + (f2 * f2) * high


def logistic2(t: mx.array) -> mx.array:
    """``1 / (1 + 2^{-t})``, i.e. ``σ(t ln 2)``, from vectorisable operations
    (no gradient rule of its own)."""
    clamped = mx.clip(t, -_MAX_EXPONENT, _MAX_EXPONENT)
    two_k, p = _power_parts(clamped)
    return mx.where(clamped >= 0, two_k, p) / (two_k + p)


def logistic(x: mx.array) -> mx.array:
    """``σ(x)`` from vectorisable operations (no gradient rule of its own)."""
    return logistic2(x * _LOG2E)


def _tanh_parts(x: mx.array) -> mx.array:
    clamped = mx.clip(x * (2.0 * _LOG2E), -_MAX_EXPONENT, _MAX_EXPONENT)
    two_k, p = _power_parts(clamped)
    magnitude = (two_k - p) / (two_k + p)
    return mx.where(clamped >= 0, magnitude, -magnitude)


@mx.custom_function
def _logistic(x: mx.array) -> mx.array:
    return logistic(x)


@_logistic.vjp
def _logistic_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> mx.array:
    return cotangent * (output * (1.0 - output))


@mx.custom_function
def _tanh(x: mx.array) -> mx.array:
    return _tanh_parts(x)


@_tanh.vjp
def _tanh_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> mx.array:
    return cotangent * (1.0 - output * output)


SMALL_ELEMENTWISE = 1024
"""Up to this many elements :func:`sigmoid` and :func:`tanh` use MLX's own
functions: scalar loops, but single operations, and below this size the three
extra kernels of the vectorised forms cost more than they save."""


def _fast_path(x: mx.array) -> bool:
    return x.size > SMALL_ELEMENTWISE and mx.default_device().type == mx.DeviceType.cpu


def sigmoid(x: mx.array) -> mx.array:
    """The logistic function ``σ(x) = 1 / (1 + e^{-x})``.

    On the CPU, for arrays of more than :data:`SMALL_ELEMENTWISE` elements,
    from vectorisable operations (absolute error below 1e-7, relative error
    below 2e-6 for ``|x| < 20``; about 1 ns an element compiled, against
    15 for ``mx.sigmoid``); otherwise ``mx.sigmoid``. The gradient is
    ``σ (1 − σ)``.
    """
    if _fast_path(x):
        return cast(mx.array, _logistic(x))
    return mx.sigmoid(x)


def tanh(x: mx.array) -> mx.array:
    """``tanh(x)``, on the CPU for arrays of more than
    :data:`SMALL_ELEMENTWISE` elements from vectorisable operations (absolute
    error below 2e-7); otherwise ``mx.tanh``. The gradient is ``1 − tanh²``."""
    if _fast_path(x):
        return cast(mx.array, _tanh(x))
    return mx.tanh(x)


def sigmoid_values(x: mx.array) -> mx.array:
    """:func:`sigmoid` without a gradient rule, for hand-written gradients."""
    return logistic(x) if _fast_path(x) else mx.sigmoid(x)


def tanh_values(x: mx.array) -> mx.array:
    """:func:`tanh` without a gradient rule, for hand-written gradients."""
    return _tanh_parts(x) if _fast_path(x) else mx.tanh(x)


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
    there, each use would reduce its gradient over the batch, and kernels
    that read broadcast arrays cannot be vectorised. Broadcast once into
    contiguous arrays, the gradients of all uses are summed elementwise and
    reduced a single time.
    """
    names = ("w", "sigma", "mu", "erev")
    if isinstance(synapses, DenseSynapses):
        shape = (rows, *synapses.w.shape[-2:])
        fields = {
            name: mx.contiguous(mx.broadcast_to(getattr(synapses, name), shape))
            for name in names
        }
        return synapses._replace(**fields)
    shape = (synapses.w.shape[0], rows)
    full = tuple(
        mx.stop_gradient(mx.contiguous(mx.broadcast_to(getattr(synapses, n), shape)))
        for n in names
    )
    return synapses._replace(rows=full)


DENSE_FUSED_SIGMOID = 1 << 14
"""Up to this many activations (rows × sources × targets) the dense kernel
uses ``mx.sigmoid``: a scalar loop, but one operation that fuses with the rest
of the unfold, and at these sizes the number of kernels is what costs."""


def dense_currents(synapses: DenseSynapses, u: mx.array) -> tuple[mx.array, mx.array]:
    """``(I^num, I^den)``, each ``(R, N)``, for potentials ``u`` of shape ``(R, P)``.

    Both sums come from one reduction of ``(R, P, N, 2)``: the activations
    times ``[E, 1]``, formed in a single fused kernel.
    """
    rows, sources = u.shape
    targets = synapses.w.shape[-1]
    z = synapses.sigma[..., None] * (
        u.reshape(rows, sources, 1, 1) - synapses.mu[..., None]
    )
    if rows * sources * targets <= DENSE_FUSED_SIGMOID:
        gate = mx.sigmoid(z)
    else:
        gate = sigmoid(z)
    weights = mx.stack([synapses.erev, mx.ones_like(synapses.erev)], axis=-1)
    sums = mx.sum((synapses.w[..., None] * gate) * weights, axis=-3)
    return sums[..., 0], sums[..., 1]


# -- slot tables -------------------------------------------------------------------


@dataclass(frozen=True)
class SlotTable:
    """Items grouped by segment in rows of ``width`` slots.

    Segment ``j``'s items fill ``⌈d_j / W⌉`` consecutive rows (``d_j`` its
    item count), padded at the end; one more row of padding closes the
    table, so that its sum is zero. ``position[i]`` is the slot of item
    ``i``. Summing ``(S, R)`` slot values per segment is a reshape to
    ``(rows, W, R)`` and a sum over ``W``, then, when a segment spans several
    rows (or none), a gather of its ``fan`` row sums from ``rows_of``
    (``(segments, fan)``, missing rows pointing at the closing pad row) and
    a second sum.
    """

    segments: int
    rows: int
    width: int
    fan: int
    position: np.ndarray
    rows_of: np.ndarray | None

    @property
    def size(self) -> int:
        return self.rows * self.width

    @property
    def pad_slot(self) -> int:
        """A slot that holds no item: the first of the closing row."""
        return (self.rows - 1) * self.width


def _row_counts(degree: np.ndarray, width: int) -> np.ndarray:
    return -(-degree // width)


def _best_width(degree: np.ndarray) -> int:
    """The row width that minimises padded slots plus second-level work."""
    largest = int(degree.max()) if degree.size else 1
    candidates = {w for w in (4, 8, 12, 16, 24, 32, 48, 64, 96, 128) if w < largest}
    candidates.add(max(1, largest))
    best_cost, best = None, 1
    for width in sorted(candidates):
        rows = _row_counts(degree, width)
        fan = int(rows.max()) if rows.size else 1
        identity = bool(np.all(rows == 1))
        cost = (int(rows.sum()) + 1) * width
        if not identity:
            cost += degree.size * fan * (2 if fan > 1 else 1)
        if best_cost is None or cost < best_cost:
            best_cost, best = cost, width
    return best


def slot_table(
    segment: np.ndarray, segments: int, width: int | None = None
) -> SlotTable:
    """A :class:`SlotTable` of items with segment ids ``segment``."""
    segment = np.asarray(segment, np.int64)
    degree = np.bincount(segment, minlength=segments)
    width = _best_width(degree) if width is None else width
    rows = _row_counts(degree, width)
    first_row = np.concatenate([[0], np.cumsum(rows)])
    total_rows = int(first_row[-1]) + 1
    order = np.argsort(segment, kind="stable")
    first_item = np.concatenate([[0], np.cumsum(degree)])[:-1]
    rank = np.arange(segment.size) - np.repeat(first_item, degree)
    position = np.empty(segment.size, np.int64)
    position[order] = first_row[:-1][segment[order]] * width + rank
    if np.all(rows == 1):
        return SlotTable(segments, total_rows, width, 1, position, None)
    fan = max(1, int(rows.max()))
    rows_of = np.full((segments, fan), total_rows - 1, np.int64)
    for m in range(fan):
        has = rows > m
        rows_of[has, m] = first_row[:-1][has] + m
    return SlotTable(segments, total_rows, width, fan, position, rows_of)


def _segment_sum(x: mx.array, shape: mx.array, rows_of: mx.array | None) -> mx.array:
    """``(segments, R)`` sums of slot values ``x`` ``(S, R)``.

    ``shape`` is any array of shape ``(rows, W)``; only its shape is read, so
    that a changed table changes the shapes a compiled function is keyed on.
    """
    rows, width = shape.shape
    sums = x.reshape(rows, width, x.shape[-1]).sum(axis=1)
    if rows_of is None:
        return sums[: rows - 1]
    segments, fan = rows_of.shape
    picked = mx.take(sums, rows_of.reshape(-1), axis=0)
    if fan == 1:
        return picked
    return picked.reshape(segments, fan, x.shape[-1]).sum(axis=1)


# -- sparse kernel -------------------------------------------------------------


class SparseSynapses(NamedTuple):
    """Per-slot parameters ``(S, 1)`` (or ``(S, R)``, one per batch row) and
    the tables of :func:`edge_index`.

    ``rows`` optionally holds the four parameters broadcast to ``(S, R)`` in
    contiguous arrays, made once per call by :func:`broadcast_synapses` for
    the solver's kernels to read; gradients still go to the ``(S, 1)``
    fields, each solver call reducing its own over the batch, so that no
    ``(S, R)`` gradient per step is kept until the end of the sequence.
    """

    w: mx.array
    sigma: mx.array
    mu: mx.array
    erev: mx.array
    edges: dict[str, mx.array]
    rows: tuple[mx.array, mx.array, mx.array, mx.array] | None = None


def edge_index(mask: np.ndarray) -> dict[str, mx.array]:
    """Slot tables of the nonzero entries of a ``(P, N)`` matrix.

    Returns int32 arrays:

    - ``source`` ``(rows, W)``: the presynaptic neuron of each slot (0 for
      padding) — the layout of the slots by target;
    - ``target`` ``(S,)``: the target of each slot (0 for padding);
    - ``flat`` ``(S,)``: ``source · N + target``, the slot's entry in the
      flattened matrix (0 for padding), and ``present`` ``(S, 1)`` float:
      1 for a synapse, 0 for padding;
    - ``rows_of`` ``(N, fan)``: the rows of each target (absent when every
      target has exactly one row);
    - ``by_source`` ``(rows2, W2)``: the slots of each source neuron, laid
      out the same way (padding points at an empty slot), and
      ``source_rows_of`` ``(P, fan2)`` — used to sum gradients by source.
    """
    mask = np.asarray(mask)
    sources, targets = mask.shape
    source, target = (axis.astype(np.int64) for axis in np.nonzero(mask))

    by_target = slot_table(target, targets)
    slots = by_target.size
    position = by_target.position
    slot_source = np.zeros(slots, np.int64)
    slot_target = np.zeros(slots, np.int64)
    flat = np.zeros(slots, np.int64)
    present = np.zeros((slots, 1), np.float32)
    slot_source[position] = source
    slot_target[position] = target
    flat[position] = source * targets + target
    present[position] = 1.0

    by_source = slot_table(source, sources)
    gather = np.full(by_source.size, by_target.pad_slot, np.int64)
    gather[by_source.position] = position

    row_target = slot_target.reshape(by_target.rows, -1)[:, 0]
    edges = {
        "row_target": mx.array(row_target.astype(np.int32)),
        "source": mx.array(slot_source.reshape(by_target.rows, -1).astype(np.int32)),
        "target": mx.array(slot_target.astype(np.int32)),
        "flat": mx.array(flat.astype(np.int32)),
        "present": mx.array(present),
        "by_source": mx.array(gather.reshape(by_source.rows, -1).astype(np.int32)),
    }
    if by_target.rows_of is not None:
        edges["rows_of"] = mx.array(by_target.rows_of.astype(np.int32))
    if by_source.rows_of is not None:
        edges["source_rows_of"] = mx.array(by_source.rows_of.astype(np.int32))
    return edges


def sparse_synapses(
    w: mx.array,
    sigma: mx.array,
    mu: mx.array,
    erev: mx.array,
    gains: mx.array,
    edges: dict[str, mx.array],
    positive: Callable[[mx.array], mx.array],
) -> SparseSynapses:
    """Gather the parameters of the slots in ``edges`` once.

    ``positive`` (softplus or identity) is applied to the gathered weights
    only, so it costs ``S`` evaluations instead of ``P·N``. Padding slots
    get ``w = 0``: their activations, and all gradients through them, are 0.
    """
    flat = edges["flat"]

    def take(matrix: mx.array) -> mx.array:
        return mx.take(matrix.reshape(-1), flat)[:, None]

    return SparseSynapses(
        w=positive(take(w)) * take(gains) * edges["present"],
        sigma=take(sigma),
        mu=take(mu),
        erev=take(erev),
        edges=edges,
    )


def _gather_sources(u: mx.array, edges: dict[str, mx.array]) -> mx.array:
    return mx.take(u, edges["source"].reshape(-1), axis=0)


def _sum_by_target(x: mx.array, edges: dict[str, mx.array]) -> mx.array:
    return _segment_sum(x, edges["source"], edges.get("rows_of"))


def _sum_by_source(g: mx.array, edges: dict[str, mx.array]) -> mx.array:
    """``(P, R)`` sums of slot values ``g`` over each source's slots."""
    by_source = edges["by_source"]
    picked = mx.take(g, by_source.reshape(-1), axis=0)
    return _segment_sum(picked, by_source, edges.get("source_rows_of"))


@mx.custom_function
def _gather(u: mx.array, edges: dict[str, mx.array]) -> mx.array:
    return _gather_sources(u, edges)


@_gather.vjp
def _gather_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> Any:
    edges = primals[1]
    grad = _sum_by_source(cotangent, edges)
    return grad, {key: mx.zeros_like(value) for key, value in edges.items()}


def sparse_currents(
    synapses: SparseSynapses,
    u: mx.array,
    targets: int,
    segmented: bool = True,
) -> tuple[mx.array, mx.array]:
    """``(I^num, I^den)``, each ``(N, R)``, for neuron-major ``u`` ``(P, R)``.

    ``segmented`` sums by slot rows (the kernel's way); ``False`` scatter-adds
    every slot into its target instead, a plain reference for tests.
    Differentiable; the gradient of the gather by source is a sum over each
    source's slots, not a scatter.
    """
    edges = synapses.edges
    presynaptic = cast(mx.array, _gather(u, edges))
    activation = synapses.w * sigmoid(synapses.sigma * (presynaptic - synapses.mu))
    current = activation * synapses.erev
    if segmented:
        return _sum_by_target(current, edges), _sum_by_target(activation, edges)
    zeros = mx.zeros((targets, u.shape[1]), dtype=u.dtype)
    target = edges["target"]
    return zeros.at[target].add(current), zeros.at[target].add(activation)


# -- the sparse ODE solver ----------------------------------------------------------


def _unfold(
    edges: dict[str, mx.array],
    u: mx.array,
    cm: mx.array,
    num_c: mx.array,
    den_c: mx.array,
    w: mx.array,
    sigma: mx.array,
    mu: mx.array,
    erev: mx.array,
    epsilon: float,
) -> tuple[mx.array, mx.array, mx.array]:
    """One fused semi-implicit Euler step; returns ``(u', denominator, σ)``,
    ``σ`` the ``(S, R)`` logistic of every slot."""
    x = _gather_sources(u, edges) - mu
    sig = logistic2((sigma * _LOG2E) * x)
    activation = w * sig
    numerator = _sum_by_target(activation * erev, edges)
    denominator = cm + den_c + _sum_by_target(activation, edges) + epsilon
    return (cm * u + num_c + numerator) / denominator, denominator, sig


def _reduce_to(grad: mx.array, like: mx.array) -> mx.array:
    """``grad`` summed over the axes along which ``like`` was broadcast."""
    if grad.shape == like.shape:
        return grad
    axes = [
        axis
        for axis, (g, n) in enumerate(zip(grad.shape, like.shape, strict=True))
        if n == 1 and g != 1
    ]
    return mx.sum(grad, axis=axes, keepdims=True)


def _make_solver(unfolds: int, epsilon: float) -> Callable[..., Any]:
    r"""The custom function behind :func:`sparse_solve`.

    Its outputs are the final potentials and, for the gradient, each
    unfold's potentials, denominators and slot logistics ``σ``. The gradient
    of unfold ``k`` (``P``, ``Q`` its numerator and denominator, ``g`` the
    gradient of its result ``u'``, ``a = w σ``) is

    .. math::

        g_P = g / Q, \quad g_Q = -g_P u', \quad
        g_a = g_P[j] E + g_Q[j], \quad h = g_a σ (1 - σ)

    per slot ``i → j``; then ``∂w += g_a σ``, ``∂E += w g_P[j] σ``,
    ``∂σ_{ij} += w h (u_i - μ)``, ``∂μ -= w h σ_{ij}`` and
    ``g_u = c_m g_P + \sum_{slots\ of\ i} w σ_{ij} h``. The slot sums over
    the batch are accumulated elementwise and the factors ``w`` applied once.
    """

    @mx.custom_function
    def solve(
        edges: dict[str, mx.array],
        u: mx.array,
        cm: mx.array,
        num_c: mx.array,
        den_c: mx.array,
        parameters: tuple[mx.array, ...],
        rows: tuple[mx.array, ...],
    ) -> tuple[mx.array, ...]:
        w, sigma, mu, erev = rows
        states, denominators, sigs = [], [], []
        for _ in range(unfolds):
            states.append(u)
            u, denominator, sig = _unfold(
                edges, u, cm, num_c, den_c, w, sigma, mu, erev, epsilon
            )
            denominators.append(denominator)
            sigs.append(sig)
        return (u, *states, *denominators, *sigs)

    @solve.vjp
    def solve_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        edges, u0, cm, num_c, den_c, parameters, rows_in = primals
        w, sigma, mu, erev = rows_in
        states = outputs[1 : unfolds + 1]
        denominators = outputs[unfolds + 1 : 2 * unfolds + 1]
        sigs = outputs[2 * unfolds + 1 :]
        rows, width = edges["source"].shape
        cols = u0.shape[-1]
        row_target = edges["row_target"]
        erev_rows = erev.reshape(rows, width, cols)
        w_sigma = w * sigma
        g = cotangents[0]
        after = outputs[0]
        sums: dict[str, mx.array] = {}

        def accumulate(name: str, value: mx.array) -> None:
            sums[name] = value if name not in sums else sums[name] + value

        for k in reversed(range(unfolds)):
            g_p = g / denominators[k]
            g_q = -g_p * after
            accumulate("num", g_p)
            accumulate("den", g_q)
            accumulate("cm", g_p * states[k] + g_q)

            # per-target gradients broadcast along each target's row of slots
            g_p_rows = mx.take(g_p, row_target, axis=0)[:, None]
            g_act = g_p_rows * erev_rows + mx.take(g_q, row_target, axis=0)[:, None]
            sig = sigs[k].reshape(rows, width, cols)
            h = (g_act * (sig - sig * sig)).reshape(-1, cols)
            accumulate("w", g_act * sig)
            accumulate("erev", g_p_rows * sig)
            accumulate("sigma", h * (_gather_sources(states[k], edges) - mu))
            accumulate("mu", h)
            g = cm * g_p + _sum_by_source(h * w_sigma, edges)
            after = states[k]

        grads = (
            sums["w"].reshape(-1, cols),
            w * sums["sigma"],
            -w_sigma * sums["mu"],
            w * sums["erev"].reshape(-1, cols),
        )
        return (
            {key: mx.zeros_like(value) for key, value in edges.items()},
            g,
            _reduce_to(sums["cm"], cm),
            _reduce_to(sums["num"], num_c),
            _reduce_to(sums["den"], den_c),
            tuple(_reduce_to(d, p) for d, p in zip(grads, parameters, strict=True)),
            tuple(mx.zeros_like(r) for r in rows_in),
        )

    return solve


_SOLVERS: dict[tuple[int, float], Callable[..., Any]] = {}


def sparse_solve(
    synapses: SparseSynapses,
    u: mx.array,
    cm: mx.array,
    num_c: mx.array,
    den_c: mx.array,
    unfolds: int,
    epsilon: float,
) -> mx.array:
    """``unfolds`` semi-implicit Euler steps of the LTC ODE, neuron-major.

    ``u``, ``num_c``, ``den_c`` are ``(N, R)``, ``cm`` broadcasts to them;
    the synapse parameters are ``(S, 1)`` or ``(S, R)``. Each step is

    .. math::

        u \\leftarrow \\frac{c_m u + c^{num} + I^{num}(u)}
        {c_m + c^{den} + I^{den}(u) + \\varepsilon}

    The slot logistics ``σ`` of every unfold are kept for the gradient
    (``unfolds × S × R`` floats per call); each call's parameter gradients
    are reduced to the parameters' own shapes before it returns.
    """
    key = (unfolds, epsilon)
    if key not in _SOLVERS:
        _SOLVERS[key] = _make_solver(unfolds, epsilon)
    rows = u.shape[1]

    def full(x: mx.array) -> mx.array:
        if x.shape[-1] == rows:
            return x
        return mx.contiguous(mx.broadcast_to(x, (x.shape[0], rows)))

    parameters = (synapses.w, synapses.sigma, synapses.mu, synapses.erev)
    rows_in: tuple[mx.array, ...] | None = synapses.rows
    if rows_in is None or rows_in[0].shape[-1] != rows:
        rows_in = tuple(full(x) for x in parameters)
    outputs = _SOLVERS[key](synapses.edges, u, cm, num_c, den_c, parameters, rows_in)
    return cast(mx.array, outputs[0])
