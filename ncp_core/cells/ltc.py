"""The Liquid Time-Constant cell: a wired, conductance-based ODE neuron model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ncp_core import native
from ncp_core.cells import synapses as syn
from ncp_core.cells._checks import (
    as_float_array,
    check_matrix,
    check_polarity,
    check_size,
    check_step_shapes,
    elapsed_column,
)
from ncp_core.errors import ModelError
from ncp_core.native import ltc as native_ltc

__all__ = ["MIN_ELAPSED", "LTCCell"]

MAPPINGS = ("affine", "linear", None)

DENSE_SENSORY_BUDGET = 1 << 22
"""Elements of the ``(rows, S, N)`` sensory activations the dense kernel forms
at once; longer sequences are taken in chunks of steps."""

NATIVE_CACHE_ELEMENTS = 1 << 16
"""Cells with up to this many parameter elements keep the native kernel's
values between calls (checked against the parameters' contents each call)."""

MIN_ELAPSED = 1e-6
"""Elapsed times are clamped to at least this, so ``dt = 0`` leaves the state
(almost exactly) unchanged instead of giving NaN: ``cm/dt`` stays finite."""


def _identity(x: mx.array) -> mx.array:
    return x


def _unfold_dense(
    synapses: syn.DenseSynapses,
    u: mx.array,
    cm_t: mx.array,
    num_c: mx.array,
    den_c: mx.array,
    unfolds: int,
    epsilon: float,
    on_cpu: bool,
) -> mx.array:
    for _ in range(unfolds):
        numerator, denominator = syn.dense_currents(synapses, u)
        u = (cm_t * u + num_c + numerator) / (cm_t + den_c + denominator + epsilon)
    return u


def _unfold_sparse(
    synapses: syn.SparseSynapses,
    u: mx.array,
    cm_t: mx.array,
    num_c: mx.array,
    den_c: mx.array,
    unfolds: int,
    epsilon: float,
    on_cpu: bool,
) -> mx.array:
    return syn.sparse_solve(synapses, u, cm_t, num_c, den_c, unfolds, epsilon)


# Compiled once per shape and per value of the trailing constants: ``on_cpu``
# keys the cache by device, as the kernels choose their code by device while
# they are traced.
_UNFOLD: dict[str, Callable[..., mx.array]] = {
    "dense": mx.compile(_unfold_dense),
    "sparse": mx.compile(_unfold_sparse),
}


class LTCCell(nn.Module):
    r"""A Liquid Time-Constant cell over a wiring of ``N`` neurons.

    One step takes inputs ``(B, S)`` and a state ``(B, N)`` and returns the
    motor outputs ``(B, M)`` and the new state. With ``x`` the mapped input,
    the sensory currents are computed once and the ODE is unfolded ``K``
    times with a fused semi-implicit Euler step:

    .. math::

        c_t = \frac{c_m\,K\,\tau}{\Delta t}, \qquad
        v \leftarrow \frac{c_t v + g_l v_l + \sum_i a_{ij} E_{ij}
        + \sum_s a^s_{sj} E^s_{sj}}{c_t + g_l + \sum_i a_{ij} + \sum_s a^s_{sj}
        + \varepsilon}

    where ``a_ij = w_ij σ(σ_ij (v_i − μ_ij))`` over the wiring's synapses
    (see :mod:`ncp_core.cells.synapses`) and ``τ`` is the wiring's per-neuron
    time scale (1 when it has none). ``w, sensory_w, cm, gleak`` pass through
    softplus when ``implicit_param_constraints`` is set. The outputs are
    ``v[:, :M] * output_w + output_b``.

    The synapse masks and gains are constants, not parameters: they are
    derived from the wiring, never saved with the weights, and may be changed
    between steps with :meth:`set_wiring_masks` and :meth:`set_synapse_gains`.

    Args:
        wiring (Wiring): The connectivity; built here if ``in_features`` is given.
        in_features (int, optional): Input size ``S``. Default: ``None`` (the
            wiring must already be built).
        input_mapping (str): ``"affine"`` (``x·w + b``), ``"linear"`` (``x·w``)
            or ``None`` (identity). Default: ``"affine"``.
        output_mapping (str): Same choices for the outputs. Default: ``"affine"``.
        ode_unfolds (int): ``K``, solver steps per time step. Default: ``6``.
        epsilon (float): Added to the denominator. Default: ``1e-8``.
        implicit_param_constraints (bool): Keep ``w, sensory_w, cm, gleak``
            positive with a softplus; otherwise call
            :meth:`apply_weight_constraints` after each update. Default: ``False``.
        kernel (str): ``"auto"``, ``"native"``, ``"sparse"`` or ``"dense"``.
            ``"auto"`` and ``"native"`` run on the native CPU kernel
            (:mod:`ncp_core.native`) whenever it can (CPU device, outside
            ``mx.compile``/``mx.vmap``, a C compiler found) and otherwise on
            the MLX kernel :func:`~ncp_core.cells.synapses.choose_kernel`
            picks; ``"native"`` raises if the native kernel does not build.
            ``"sparse"`` and ``"dense"`` always use that MLX kernel.
            Default: ``"auto"``.
    """

    def __init__(
        self,
        wiring: Any,
        in_features: int | None = None,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = False,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        if in_features is not None:
            wiring.build(in_features)
        if not wiring.is_built():
            raise ModelError(
                f"the wiring {wiring!r} has no input size yet: pass in_features "
                "or call wiring.build(input_dim) first"
            )
        for name, mapping in (
            ("input_mapping", input_mapping),
            ("output_mapping", output_mapping),
        ):
            if mapping not in MAPPINGS:
                raise ModelError(
                    f"unknown {name} {mapping!r}; use 'affine', 'linear' or None"
                )
        self.wiring = wiring
        self.input_mapping = input_mapping
        self.output_mapping = output_mapping
        self.ode_unfolds = check_size("ode_unfolds", ode_unfolds)
        self.epsilon = float(epsilon)
        self.implicit_param_constraints = bool(implicit_param_constraints)
        self.native = kernel in ("auto", "native")
        if kernel == "native" and not native_ltc.available():
            raise ModelError(
                "kernel='native' but the native LTC kernel is unavailable: "
                f"{native.status()['failures'] or 'NCP_NATIVE turns it off'}; "
                "use kernel='auto' to fall back to the MLX kernels"
            )
        self.kernel = syn.resolve_kernel(
            "auto" if kernel == "native" else kernel, wiring
        )

        n, s, m = wiring.units, wiring.input_dim, wiring.output_dim
        self.gleak = mx.random.uniform(0.001, 1.0, (n,))
        self.vleak = mx.random.uniform(-0.2, 0.2, (n,))
        self.cm = mx.random.uniform(0.4, 0.6, (n,))
        self.sigma = mx.random.uniform(3.0, 8.0, (n, n))
        self.mu = mx.random.uniform(0.3, 0.8, (n, n))
        self.w = mx.random.uniform(0.001, 1.0, (n, n))
        self.erev = mx.array(wiring.erev_initializer())
        self.sensory_sigma = mx.random.uniform(3.0, 8.0, (s, n))
        self.sensory_mu = mx.random.uniform(0.3, 0.8, (s, n))
        self.sensory_w = mx.random.uniform(0.001, 1.0, (s, n))
        self.sensory_erev = mx.array(wiring.sensory_erev_initializer())
        if input_mapping in ("affine", "linear"):
            self.input_w = mx.ones((s,))
        if input_mapping == "affine":
            self.input_b = mx.zeros((s,))
        if output_mapping in ("affine", "linear"):
            self.output_w = mx.ones((m,))
        if output_mapping == "affine":
            self.output_b = mx.zeros((m,))

        self._polarity = np.zeros((n, n), dtype=np.int8)
        self._sensory_polarity = np.zeros((s, n), dtype=np.int8)
        self._install_masks(wiring.adjacency, wiring.sensory_adjacency)
        self._synapse_gains = mx.ones((n, n))
        self._sensory_synapse_gains = mx.ones((s, n))
        if wiring.time_scales is not None:
            self._time_scales = mx.array(np.asarray(wiring.time_scales, np.float32))
        self._compiled_step: Callable[..., Any] | None = None

    # -- sizes ---------------------------------------------------------------

    @property
    def state_size(self) -> int:
        return self.wiring.units

    @property
    def sensory_size(self) -> int:
        return self._sensory_polarity.shape[0]

    @property
    def motor_size(self) -> int:
        return self.wiring.output_dim

    @property
    def output_size(self) -> int:
        return self.wiring.output_dim

    @property
    def synapse_count(self) -> int:
        """Neuron-to-neuron synapses in the current mask."""
        return int(np.count_nonzero(self._polarity))

    @property
    def sensory_synapse_count(self) -> int:
        """Input-to-neuron synapses in the current mask."""
        return int(np.count_nonzero(self._sensory_polarity))

    # -- masks, gains, constraints ------------------------------------------

    def _install_masks(self, adjacency: np.ndarray, sensory: np.ndarray) -> None:
        self._polarity = np.asarray(adjacency, dtype=np.int8).copy()
        self._sensory_polarity = np.asarray(sensory, dtype=np.int8).copy()
        self._sparsity_mask = mx.array(np.abs(self._polarity).astype(np.float32))
        self._sensory_sparsity_mask = mx.array(
            np.abs(self._sensory_polarity).astype(np.float32)
        )
        if self.kernel == "sparse":
            self._edges = syn.edge_index(self._polarity)
            self._sensory_edges = syn.edge_index(self._sensory_polarity)
        self._native_lists: tuple[Any, Any] | None = None
        self._native_cache: tuple[Any, ...] | None = None

    def set_wiring_masks(
        self,
        adjacency: Any = None,
        sensory_adjacency: Any = None,
    ) -> None:
        """Take new synapse polarities, e.g. after the wiring grew or pruned.

        A synapse that appears, or whose polarity flips, gets its reversal
        potential (``erev``/``sensory_erev``) set to the new polarity; every
        other trained value is kept. A removed synapse is masked out and keeps
        its values, so it resumes where it was if it grows back with the same
        polarity. Safe between calls of a compiled step: the masks are part of
        ``model.state``.

        Args:
            adjacency: ``(N, N)`` polarities -1/0/+1. Default: the wiring's
                current ``adjacency``.
            sensory_adjacency: ``(S, N)`` polarities. Default: the wiring's
                current ``sensory_adjacency``.
        """
        n, s = self.state_size, self.sensory_size
        new = check_polarity(
            "adjacency",
            self.wiring.adjacency if adjacency is None else adjacency,
            (n, n),
        )
        new_sensory = check_polarity(
            "sensory_adjacency",
            self.wiring.sensory_adjacency
            if sensory_adjacency is None
            else sensory_adjacency,
            (s, n),
        )
        self.erev = _reset_changed(self.erev, self._polarity, new)
        self.sensory_erev = _reset_changed(
            self.sensory_erev, self._sensory_polarity, new_sensory
        )
        self._install_masks(new, new_sensory)

    def set_synapse_gains(self, gains: Any = None, sensory_gains: Any = None) -> None:
        """Multiply each synapse's maximal conductance ``w`` by a gain.

        Args:
            gains: ``(N, N)`` float gains. Default: all ones.
            sensory_gains: ``(S, N)`` float gains. Default: all ones.
        """
        n, s = self.state_size, self.sensory_size
        self._synapse_gains = (
            mx.ones((n, n))
            if gains is None
            else mx.array(check_matrix("gains", gains, (n, n)))
        )
        self._sensory_synapse_gains = (
            mx.ones((s, n))
            if sensory_gains is None
            else mx.array(check_matrix("sensory_gains", sensory_gains, (s, n)))
        )

    def apply_weight_constraints(self) -> None:
        """Clip ``w, sensory_w, cm, gleak`` at zero (explicit constraints only)."""
        if self.implicit_param_constraints:
            return
        self.w = mx.maximum(self.w, 0.0)
        self.sensory_w = mx.maximum(self.sensory_w, 0.0)
        self.cm = mx.maximum(self.cm, 0.0)
        self.gleak = mx.maximum(self.gleak, 0.0)

    # -- the pieces of a step, shared with the sequence module --------------
    #
    # The solver runs in the kernel's layout: batch-major ``(B, N)`` for the
    # dense kernel, neuron-major ``(N, B)`` for the sparse one.

    def _positive(self) -> Any:
        return nn.softplus if self.implicit_param_constraints else _identity

    def _prepare(self, batch: int | None = None) -> dict[str, Any]:
        """Everything a step needs that does not depend on the inputs.

        With ``batch``, the recurrent synapse parameters come broadcast to
        that batch size (see :func:`~ncp_core.cells.synapses.broadcast_synapses`).
        """
        positive = self._positive()
        gleak = positive(self.gleak)
        cm = positive(self.cm) * float(self.ode_unfolds)
        if "_time_scales" in self:
            cm = cm * self._time_scales
        prepared: dict[str, Any] = {
            "gleak": self._vector(gleak),
            "leak": self._vector(gleak * self.vleak),
            "cm": cm,
        }
        if self.kernel == "dense":
            prepared["synapses"] = syn.dense_synapses(
                positive(self.w),
                self.sigma,
                self.mu,
                self.erev,
                self._sparsity_mask * self._synapse_gains,
            )
            prepared["sensory"] = syn.dense_synapses(
                positive(self.sensory_w),
                self.sensory_sigma,
                self.sensory_mu,
                self.sensory_erev,
                self._sensory_sparsity_mask * self._sensory_synapse_gains,
            )
        else:
            prepared["synapses"] = syn.sparse_synapses(
                self.w,
                self.sigma,
                self.mu,
                self.erev,
                self._synapse_gains,
                self._edges,
                positive,
            )
            prepared["sensory"] = syn.sparse_synapses(
                self.sensory_w,
                self.sensory_sigma,
                self.sensory_mu,
                self.sensory_erev,
                self._sensory_synapse_gains,
                self._sensory_edges,
                positive,
            )
        if batch is not None:
            prepared["synapses"] = syn.broadcast_synapses(prepared["synapses"], batch)
        return prepared

    def _vector(self, x: mx.array) -> mx.array:
        """A per-neuron ``(N,)`` vector shaped to broadcast in the kernel layout."""
        return x[:, None] if self.kernel == "sparse" else x

    def _to_layout(self, x: mx.array) -> mx.array:
        """``(B, N)`` → kernel layout."""
        return x.T if self.kernel == "sparse" else x

    def _from_layout(self, u: mx.array) -> mx.array:
        return u.T if self.kernel == "sparse" else u

    def _steps_to_layout(self, x: mx.array) -> mx.array:
        """``(B, L, N)`` → ``(L, *layout)``, one contiguous slice per step."""
        return x.transpose(1, 2, 0) if self.kernel == "sparse" else x.transpose(1, 0, 2)

    def _map_inputs(self, x: mx.array) -> mx.array:
        if self.input_mapping in ("affine", "linear"):
            x = x * self.input_w
        if self.input_mapping == "affine":
            x = x + self.input_b
        return x

    def _map_outputs(self, v: mx.array) -> mx.array:
        y = v[..., : self.motor_size]
        if self.output_mapping in ("affine", "linear"):
            y = y * self.output_w
        if self.output_mapping == "affine":
            y = y + self.output_b
        return y

    def _drive(
        self, prepared: dict[str, Any], x: mx.array
    ) -> tuple[mx.array, mx.array]:
        """Constant terms of every step for raw inputs ``x`` of shape ``(B, L, S)``.

        Returns ``(g_l v_l + I^num_sensory, g_l + I^den_sensory)``, each
        ``(L, *layout)``: the sensory synapses see the input held constant
        over the unfolds, so all steps are computed at once.
        """
        batch, length, features = x.shape
        n = self.state_size
        x = self._map_inputs(x)
        if self.kernel == "dense":
            # the dense activations are (rows, S, N): take the steps in chunks
            steps = max(1, DENSE_SENSORY_BUDGET // max(1, batch * features * n))
            nums, dens = [], []
            for start in range(0, length, steps):
                chunk = x[:, start : start + steps].transpose(1, 0, 2)
                rows = chunk.reshape(-1, features)
                num, den = syn.dense_currents(prepared["sensory"], rows)
                nums.append(num.reshape(-1, batch, n))
                dens.append(den.reshape(-1, batch, n))
            num = mx.concatenate(nums) if len(nums) > 1 else nums[0]
            den = mx.concatenate(dens) if len(dens) > 1 else dens[0]
        else:
            rows = x.transpose(2, 1, 0).reshape(features, length * batch)
            num, den = syn.sparse_currents(prepared["sensory"], rows, n)
            # one contiguous (N, B) slice per step for the solver's kernels
            num = mx.contiguous(num.reshape(n, length, batch).transpose(1, 0, 2))
            den = mx.contiguous(den.reshape(n, length, batch).transpose(1, 0, 2))
        return num + prepared["leak"], den + prepared["gleak"]

    def _capacitance(
        self, prepared: dict[str, Any], elapsed: float | mx.array
    ) -> mx.array:
        """``c_m K τ / Δt``: one layout vector for a float, ``(L, *layout)`` for
        per-sample elapsed times of shape ``(B, L, 1)``."""
        cm = prepared["cm"]
        if isinstance(elapsed, float):
            return self._vector(cm / max(elapsed, MIN_ELAPSED))
        return self._steps_to_layout(cm / mx.maximum(elapsed, MIN_ELAPSED))

    def _layout_shape(self, batch: int) -> tuple[int, int]:
        n = self.state_size
        return (n, batch) if self.kernel == "sparse" else (batch, n)

    def _solve(
        self,
        prepared: dict[str, Any],
        u: mx.array,
        cm_t: mx.array,
        num_c: mx.array,
        den_c: mx.array,
    ) -> mx.array:
        """``K`` unfolds of the ODE from ``u`` (kernel layout)."""
        return _UNFOLD[self.kernel](
            prepared["synapses"],
            u,
            cm_t,
            num_c,
            den_c,
            self.ode_unfolds,
            self.epsilon,
            mx.default_device().type == mx.DeviceType.cpu,
        )

    # -- the native kernel --------------------------------------------------

    @property
    def uses_native(self) -> bool:
        """Whether eager CPU calls run on the native kernel."""
        return self.native and native_ltc.available()

    def _native_synapse_lists(self) -> tuple[Any, Any]:
        if self._native_lists is None:
            self._native_lists = (
                native_ltc.synapse_list(self._polarity),
                native_ltc.synapse_list(self._sensory_polarity),
            )
        return self._native_lists

    def _native_sources(self) -> tuple[mx.array | None, ...]:
        """The arrays the native kernel's values are made of."""
        return (
            self.gleak, self.vleak, self.cm, self.w, self.sigma, self.mu,
            self.erev, self.sensory_w, self.sensory_sigma, self.sensory_mu,
            self.sensory_erev, self._synapse_gains, self._sensory_synapse_gains,
            self.get("_time_scales"), self.get("input_w"), self.get("input_b"),
            self.get("output_w"), self.get("output_b"),
        )  # fmt: skip

    def _native_parameters(self, sources: tuple[Any, ...]) -> dict[str, Any]:
        """The per-neuron and per-synapse values the native kernel takes,
        from the evaluated ``sources`` (:meth:`_native_sources`).

        For cells of up to :data:`NATIVE_CACHE_ELEMENTS` parameter elements
        (controllers stepped one input at a time) the values are reused while
        the source arrays are the same objects with the same contents (an
        in-place ``w[i, j] = x`` keeps the object), so repeated inference
        calls create no MLX work at all.
        """
        present = [a for a in sources if a is not None]
        fingerprint = None
        if sum(a.size for a in present) <= NATIVE_CACHE_ELEMENTS:
            fingerprint = np.concatenate([np.asarray(a).ravel() for a in present])
            cached = self._native_cache
            if (
                cached is not None
                and all(a is b for a, b in zip(cached[0], sources, strict=True))
                and np.array_equal(cached[2], fingerprint)
            ):
                return cached[1]
        recurrent, sensory = self._native_synapse_lists()
        positive = self._positive()
        cm = positive(self.cm) * float(self.ode_unfolds)
        if "_time_scales" in self:
            cm = cm * self._time_scales

        def on_synapses(matrix: mx.array, flat: mx.array) -> mx.array:
            return mx.take(matrix.reshape(-1), flat)

        # the constraint and gains act on the gathered synapses only, not on
        # the (P, N) matrices (mostly absent synapses in a sparse wiring)
        w = positive(on_synapses(self.w, recurrent.flat)) * on_synapses(
            self._synapse_gains, recurrent.flat
        )
        sensory_w = positive(on_synapses(self.sensory_w, sensory.flat)) * on_synapses(
            self._sensory_synapse_gains, sensory.flat
        )
        features = self.sensory_size
        values = {
            "input_w": self.input_w
            if "input_w" in self
            else mx.ones((features,), mx.float32),
            "input_b": self.input_b
            if "input_b" in self
            else mx.zeros((features,), mx.float32),
            "output_w": self.output_w
            if "output_w" in self
            else mx.ones((self.motor_size,), mx.float32),
            "output_b": self.output_b
            if "output_b" in self
            else mx.zeros((self.motor_size,), mx.float32),
            "cm": cm,
            "gleak": positive(self.gleak),
            "vleak": self.vleak,
            "synapses": (
                w,
                *(
                    on_synapses(m, recurrent.flat)
                    for m in (self.sigma, self.mu, self.erev)
                ),
            ),
            "sensory_synapses": (
                sensory_w,
                *(
                    on_synapses(m, sensory.flat)
                    for m in (self.sensory_sigma, self.sensory_mu, self.sensory_erev)
                ),
            ),
        }
        self._native_cache = (
            None if fingerprint is None else (sources, values, fingerprint)
        )
        return values

    def _native_run(
        self,
        x: mx.array,
        h: mx.array,
        elapsed: float | mx.array,
        mask: mx.array | None,
    ) -> tuple[mx.array, mx.array] | None:
        """Every step's state ``(B, L, N)`` and readout ``(B, L, M)`` for raw
        inputs ``x (B, L, S)``, state ``h (B, N)``, elapsed times (a float or
        ``(B, L, 1)``) and an optional ``(B, L)`` mask, on the native kernel;
        ``(B, N)`` and ``(B, M)`` for one step given as ``x (B, S)``. None
        where it cannot run now (inside ``mx.compile``/``mx.vmap``, or not on
        the CPU)."""
        if not self.uses_native:
            return None
        sources = self._native_sources()
        present = [a for a in sources if a is not None]
        if x.size == 0:
            return None  # nothing to compute: the MLX path returns the shapes
        if any(a.dtype != mx.float32 for a in (x, h, *present)):
            return None  # the kernel is float32 only: other types take MLX's
        if not native.can_run(x, h, *present):
            return None
        batch, length = x.shape[0], (1 if x.ndim == 2 else x.shape[1])
        recurrent, sensory = self._native_synapse_lists()
        values = self._native_parameters(sources)
        if isinstance(elapsed, float):
            dt = mx.array([max(elapsed, MIN_ELAPSED)], mx.float32)
        else:
            dt = mx.broadcast_to(
                mx.maximum(elapsed[..., 0], MIN_ELAPSED), (batch, length)
            )
        arguments = (
            x,
            values["input_w"],
            values["input_b"],
            h,
            values["cm"],
            dt,
            mask,
            values["gleak"],
            values["vleak"],
            values["output_w"],
            values["output_b"],
        )
        # the values made here, in one evaluation (none for a cached cell)
        mx.eval(
            *(a for a in arguments if a is not None),
            *values["synapses"],
            *values["sensory_synapses"],
        )
        return native_ltc.ltc_sequence(
            recurrent,
            sensory,
            *arguments,
            values["synapses"],
            values["sensory_synapses"],
            self.ode_unfolds,
            self.epsilon,
        )

    def __call__(
        self,
        inputs: mx.array,
        state: mx.array,
        elapsed_time: Any = 1.0,
    ) -> tuple[mx.array, mx.array]:
        """One step: ``(B, S)`` inputs and ``(B, N)`` state → ``((B, M), (B, N))``.

        ``elapsed_time`` is a number or a ``(B,)``/``(B, 1)`` array, one per
        sample; values below :data:`MIN_ELAPSED` are clamped to it.
        """
        inputs = as_float_array(inputs, "inputs")
        state = as_float_array(state, "state")
        check_step_shapes("LTCCell", inputs, state, self.sensory_size, self.state_size)
        elapsed = elapsed_column(elapsed_time, inputs.shape[0])
        steps = elapsed if isinstance(elapsed, float) else elapsed[:, :, None]
        native_result = self._native_run(inputs, state, steps, None)
        if native_result is not None:
            v, y = native_result
            return y, v
        if isinstance(elapsed, float):
            # an array, not a constant: a new value must not retrace the step
            elapsed = mx.array(elapsed, dtype=mx.float32).reshape(1, 1)
        if self._compiled_step is None:
            # one compiled graph per call: a single step is too small for
            # anything but the number of kernels and Python calls to matter
            self._compiled_step = mx.compile(self._step, inputs=self.state)
        return cast(
            tuple[mx.array, mx.array], self._compiled_step(inputs, state, elapsed)
        )

    def _step(
        self, inputs: mx.array, state: mx.array, elapsed: mx.array
    ) -> tuple[mx.array, mx.array]:
        prepared = self._prepare()
        num_c, den_c = self._drive(prepared, inputs[:, None, :])
        cm_t = self._capacitance(prepared, elapsed[:, :, None])[0]
        u = self._solve(prepared, self._to_layout(state), cm_t, num_c[0], den_c[0])
        v = self._from_layout(u)
        return self._map_outputs(v), v


def _reset_changed(erev: mx.array, old: np.ndarray, new: np.ndarray) -> mx.array:
    """``erev`` with the entries of new or flipped synapses set to the polarity."""
    changed = (new != 0) & (new != old)
    if not changed.any():
        return erev
    return mx.where(mx.array(changed), mx.array(new.astype(np.float32)), erev)
