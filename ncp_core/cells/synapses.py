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
hand: it recomputes the activations of each unfold instead of storing them,
so training memory does not grow with ``slots × batch × unfolds × steps``.

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
    "sparse_currents",
    "sparse_solve",
    "sparse_synapses",
    "tanh",
]

KERNELS = ("dense", "sparse")

SPARSE_MIN_UNITS = 32
SPARSE_MAX_DENSITY = 0.5


def choose_kernel(wiring: Any) -> str:
    """The synapse kernel that ``kernel="auto"`` uses for ``wiring``.

    Sparse from :data:`SPARSE_MIN_UNITS` neurons on when fewer than
    :data:`SPARSE_MAX_DENSITY` of the possible synapses exist, dense otherwise.
    """
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
# Both come from e^{-a}, a = |x| (or 2|x|), written as p / T with
# T = 2^k, k = ⌊a·log2 e⌋ clamped to 29, and p = 2^{-f}, f = a·log2 e − k in
# [0, 1), a degree-7 polynomial. T is built from its bits, so no exp, floor or
# variable shift is needed: every operation is one that g++ vectorises in the
# kernels of mx.compile (MLX's own exp/tanh/sigmoid run as scalar loops on the
# CPU, 12-16 ns an element). Then σ(x) = T/(T + p) for x ≥ 0 and p/(T + p)
# below, exact in relative terms on both sides; past |x| = 20.1 the clamp
# leaves σ within 2e-9 of 0 or 1.

_LOG2E = 1.4426950408889634
_MAX_EXPONENT = 29.0
# 2^{-f} on [0, 1]: a relative minimax fit (max relative error 4.1e-11 in
# exact arithmetic, 2.0e-7 evaluated in float32), Estrin's scheme.
_EXP2_NEG = (
    0.999999999959479,
    -0.693147175763062,
    0.24022641152759516,
    -0.05550337428865354,
    0.009615318475650007,
    -0.0013274375585554353,
    0.00014700697451589507,
    -1.074934722754225e-05,
)


def _exp_parts(a: mx.array) -> tuple[mx.array, mx.array]:
    """``(T, p)`` with ``e^{-a} = p / T`` for ``a ≥ 0`` (see above)."""
    y = mx.minimum(a * _LOG2E, _MAX_EXPONENT)
    k = y.astype(mx.int32)
    two_k = ((k + 127) << 23).view(mx.float32)
    f = y - k.astype(mx.float32)
    c = _EXP2_NEG
    f2 = f * f
    low = (c[0] + c[1] * f) + f2 * (c[2] + c[3] * f)
    high = (c[4] + c[5] * f) + f2 * (c[6] + c[7] * f)
    return two_k, low + (f2 * f2) * high


def logistic(x: mx.array) -> mx.array:
    """``σ(x)`` from vectorisable operations (no gradient rule of its own)."""
    two_k, p = _exp_parts(mx.abs(x))
    return mx.where(x >= 0, two_k, p) / (two_k + p)


def _tanh_parts(x: mx.array) -> mx.array:
    two_k, p = _exp_parts(mx.abs(x) * 2.0)
    magnitude = (two_k - p) / (two_k + p)
    return mx.where(x >= 0, magnitude, -magnitude)


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


def _on_cpu() -> bool:
    return mx.default_device().type == mx.DeviceType.cpu


def sigmoid(x: mx.array) -> mx.array:
    """The logistic function ``σ(x) = 1 / (1 + e^{-x})``.

    On the CPU from vectorisable operations (absolute error below 1e-7,
    relative error below 2e-6 for ``|x| < 20``, about 1 ns an element
    compiled); elsewhere ``mx.sigmoid``. The gradient is ``σ (1 − σ)``.
    """
    if _on_cpu():
        return cast(mx.array, _logistic(x))
    return mx.sigmoid(x)


def tanh(x: mx.array) -> mx.array:
    """``tanh(x)``, on the CPU from vectorisable operations (absolute error
    below 2e-7); elsewhere ``mx.tanh``. The gradient is ``1 − tanh²``."""
    if _on_cpu():
        return cast(mx.array, _tanh(x))
    return mx.tanh(x)


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
    if isinstance(synapses, DenseSynapses):
        shape = (rows, *synapses.w.shape[-2:])
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


def slot_table(segment: np.ndarray, segments: int, width: int | None = None) -> SlotTable:
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
    """Per-slot parameters ``(S, 1)`` (or ``(S, R)`` once broadcast) and the
    tables of :func:`edge_index`."""

    w: mx.array
    sigma: mx.array
    mu: mx.array
    erev: mx.array
    edges: dict[str, mx.array]


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
    u, edges = primals
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
    """One fused semi-implicit Euler step; returns ``(u', denominator, σ)``."""
    x = _gather_sources(u, edges) - mu
    sig = logistic(sigma * x)
    activation = w * sig
    numerator = _sum_by_target(activation * erev, edges)
    denominator = cm + den_c + _sum_by_target(activation, edges) + epsilon
    return (cm * u + num_c + numerator) / denominator, denominator, sig, x


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


_VARIANT = "so"


def _make_solver(unfolds: int, epsilon: float, variant: str) -> Callable[..., Any]:
    store = "s" in variant
    by_row = "b" in variant
    store_x = "x" in variant
    opt = "o" in variant

    @mx.custom_function
    def solve(
        edges: dict[str, mx.array],
        u: mx.array,
        cm: mx.array,
        num_c: mx.array,
        den_c: mx.array,
        w: mx.array,
        sigma: mx.array,
        mu: mx.array,
        erev: mx.array,
    ) -> tuple[mx.array, ...]:
        states, denominators, sigs, xs = [], [], [], []
        for _ in range(unfolds):
            states.append(u)
            u, denominator, sig, x = _unfold(
                edges, u, cm, num_c, den_c, w, sigma, mu, erev, epsilon
            )
            denominators.append(denominator)
            sigs.append(sig)
            xs.append(x)
        if store_x:
            return (u, *states, *denominators, *sigs, *xs)
        if store:
            return (u, *states, *denominators, *sigs)
        return (u, *states, *denominators)

    @solve.vjp
    def solve_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        edges, u0, cm, num_c, den_c, w, sigma, mu, erev = primals
        states = outputs[1 : unfolds + 1]
        denominators = outputs[unfolds + 1 : 2 * unfolds + 1]
        sigs = outputs[2 * unfolds + 1 : 3 * unfolds + 1]
        xs = outputs[3 * unfolds + 1 :]
        target = edges["target"]
        g = cotangents[0]
        after = outputs[0]
        g_cm = g_num = g_den = None
        g_w = g_erev = g_sigma = g_mu = None
        ws = w * sigma
        for k in reversed(range(unfolds)):
            u, denominator = states[k], denominators[k]
            g_p = g / denominator
            g_q = -g_p * after
            g_num = g_p if g_num is None else g_num + g_p
            g_den = g_q if g_den is None else g_den + g_q
            term = g_p * u + g_q
            g_cm = term if g_cm is None else g_cm + term

            if store_x:
                x = xs[k]
            else:
                x = _gather_sources(u, edges) - mu
            sig = sigs[k] if store else logistic(sigma * x)
            if opt:
                rows, width = edges["source"].shape
                cols = g_p.shape[-1]
                row_target = edges["row_target"]
                g_p_rows = mx.take(g_p, row_target, axis=0)[:, None]
                g_q_rows = mx.take(g_q, row_target, axis=0)[:, None]
                e3 = erev.reshape(rows, width, cols)
                s3 = sig.reshape(rows, width, cols)
                g_act = g_p_rows * e3 + g_q_rows
                h = g_act * (s3 - s3 * s3)
                d_w = g_act * s3
                d_pe = g_p_rows * s3
                d_h = h.reshape(-1, cols)
                d_x = d_h * x
                g_w = d_w if g_w is None else g_w + d_w
                g_erev = d_pe if g_erev is None else g_erev + d_pe
                g_sigma = d_x if g_sigma is None else g_sigma + d_x
                g_mu = d_h if g_mu is None else g_mu + d_h
                g = cm * g_p + _sum_by_source(d_h * ws, edges)
                after = u
                continue
            if by_row:
                rows, width = edges["source"].shape
                shape = (rows, width, g_p.shape[-1])
                row_target = edges["row_target"]
                g_p_slot = mx.broadcast_to(
                    mx.take(g_p, row_target, axis=0)[:, None], shape
                ).reshape(-1, g_p.shape[-1])
                g_q_slot = mx.broadcast_to(
                    mx.take(g_q, row_target, axis=0)[:, None], shape
                ).reshape(-1, g_p.shape[-1])
            else:
                g_p_slot = mx.take(g_p, target, axis=0)
                g_q_slot = mx.take(g_q, target, axis=0)
            g_act = g_p_slot * erev + g_q_slot
            d_w = g_act * sig
            d_erev = g_p_slot * (w * sig)
            d_z = d_w * (w * (1.0 - sig))
            d_sigma = d_z * x
            g_w = d_w if g_w is None else g_w + d_w
            g_erev = d_erev if g_erev is None else g_erev + d_erev
            g_sigma = d_sigma if g_sigma is None else g_sigma + d_sigma
            g_mu = d_z if g_mu is None else g_mu + d_z
            g = cm * g_p + _sum_by_source(d_z * sigma, edges)
            after = u
        assert g_mu is not None
        if opt:
            cols = u0.shape[-1]
            g_w = g_w.reshape(-1, cols)
            g_erev = w * g_erev.reshape(-1, cols)
            g_sigma = w * g_sigma
            g_mu = w * g_mu
        return (
            {key: mx.zeros_like(value) for key, value in edges.items()},
            g,
            _reduce_to(g_cm, cm),
            _reduce_to(g_num, num_c),
            _reduce_to(g_den, den_c),
            _reduce_to(g_w, w),
            _reduce_to(g_sigma, sigma),
            _reduce_to(-g_mu * sigma, mu),
            _reduce_to(g_erev, erev),
        )

    return solve


_SOLVERS: dict[tuple[int, float, str], Callable[..., Any]] = {}


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

    The gradient recomputes each unfold's activations from its stored
    potentials ``u`` (``(N, R)`` each), so nothing of size ``S × R`` outlives
    the call.
    """
    key = (unfolds, epsilon, _VARIANT)
    if key not in _SOLVERS:
        _SOLVERS[key] = _make_solver(unfolds, epsilon, _VARIANT)
    rows = u.shape[1]

    def full(x: mx.array) -> mx.array:
        if x.shape[-1] == rows:
            return x
        return mx.contiguous(mx.broadcast_to(x, (x.shape[0], rows)))

    outputs = _SOLVERS[key](
        synapses.edges,
        u,
        cm,
        num_c,
        den_c,
        full(synapses.w),
        full(synapses.sigma),
        full(synapses.mu),
        full(synapses.erev),
    )
    return cast(mx.array, outputs[0])
