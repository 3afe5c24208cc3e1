"""Sequence modules: LTC and CfC networks run over whole time series.

Both take ``(B, L, F)`` batches (or ``(L, B, F)`` with ``batch_first=False``,
or one unbatched ``(L, F)`` series), an optional initial state, optional
per-sample elapsed times and an optional mask for padded series, and return
``(readout, final_state)``. The time loop does only the recurrent work: the
sensory synapses, input projections and everything derived from the
parameters are computed once per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from ncp_core.cells import CfCCell, LSTMCell, LTCCell, WiredCfCCell
from ncp_core.cells._checks import as_float_array, check_size
from ncp_core.cells.cfc import check_mode, get_activation
from ncp_core.classic import FullyConnected
from ncp_core.errors import CheckpointError, ModelError
from ncp_core.wiring import Wiring

__all__ = ["LTC", "CfC", "model_from_config"]

CONFIG_FORMAT = 1


def _wiring_record(wiring: Wiring) -> dict[str, Any]:
    """The wiring's config with its plugin, distribution and version."""
    try:
        from ncp_core.plugins import wiring_record
    except ImportError:  # pragma: no cover - the plugin layer is optional here
        return wiring.config()
    return wiring_record(wiring)


def _wiring_from_config(config: Mapping[str, Any]) -> Wiring:
    try:
        from ncp_core.plugins import wiring_from_config
    except ImportError:  # pragma: no cover - the plugin layer is optional here
        return Wiring.from_config(config)
    return wiring_from_config(config)


class _SequenceModel(nn.Module):
    """Input checks, state handling, readout and configs shared by LTC and CfC."""

    _config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        return_sequences: bool,
        batch_first: bool,
        mixed_memory: bool,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        if not isinstance(units, Wiring):
            check_size("units", units)
        self.return_sequences = bool(return_sequences)
        self.batch_first = bool(batch_first)
        self.mixed_memory = bool(mixed_memory)

    # -- sizes ---------------------------------------------------------------

    @property
    def state_size(self) -> int:
        return self.rnn_cell.state_size

    @property
    def sensory_size(self) -> int:
        return self.input_size

    @property
    def motor_size(self) -> int:
        return self.rnn_cell.output_size

    @property
    def output_size(self) -> int:
        """Features of the readout (the projection's size if there is one)."""
        return self.motor_size

    @property
    def synapse_count(self) -> int:
        return self.rnn_cell.synapse_count

    @property
    def sensory_synapse_count(self) -> int:
        return self.rnn_cell.sensory_synapse_count

    # -- inputs ----------------------------------------------------------------

    def _layout(self) -> str:
        if self.batch_first:
            return "(batch, length, features)"
        return "(length, batch, features)"

    def _normalise(self, x: Any, hx: Any, timespans: Any, mask: Any) -> tuple:
        """Everything as batch-first arrays: ``x (B, L, F)``, states ``(B, N)``,
        elapsed time a float or ``(B, L, 1)``, mask ``(B, L)`` bool or None,
        and whether the input was batched."""
        name = type(self).__name__
        x = as_float_array(x, "input")
        if x.ndim not in (2, 3):
            raise ModelError(
                f"{name} expects input of shape {self._layout()} or one unbatched "
                f"series (length, features); got shape {tuple(x.shape)}"
            )
        batched = x.ndim == 3
        if not batched:
            x = x[None]
        elif not self.batch_first:
            x = x.transpose(1, 0, 2)
        batch, length, features = x.shape
        if features != self.input_size:
            raise ModelError(
                f"{name} was built for {self.input_size} input features but the "
                f"input has {features} (shape {tuple(x.shape)}); build the model "
                f"with input_size={features} or fix the data"
            )
        if length == 0:
            raise ModelError(f"{name} got an input with no time steps")
        if batch == 0:
            raise ModelError(
                f"{name} got an empty batch (input shape {tuple(x.shape)}); pass "
                "at least one series"
            )
        h, c = self._initial_state(hx, batch, batched)
        mask = self._mask(mask, batch, length, batched)
        elapsed = self._elapsed(timespans, batch, length, batched, mask)
        return x, h, c, elapsed, mask, batched

    def _initial_state(
        self, hx: Any, batch: int, batched: bool
    ) -> tuple[mx.array, mx.array | None]:
        name, n = type(self).__name__, self.state_size
        if hx is None:
            zeros = mx.zeros((batch, n))
            return zeros, (zeros if self.mixed_memory else None)
        if self.mixed_memory:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ModelError(
                    f"{name} with mixed_memory=True needs the state as a tuple "
                    f"(h, c) of two arrays; got {type(hx).__name__}"
                )
            states = [as_float_array(s, "state") for s in hx]
        else:
            if isinstance(hx, (tuple, list)):
                raise ModelError(
                    f"{name} without mixed memory takes one state array, got a "
                    f"{type(hx).__name__} of {len(hx)}"
                )
            states = [as_float_array(hx, "state")]
        expected = (batch, n) if batched else (n,)
        for state in states:
            if tuple(state.shape) != expected:
                raise ModelError(
                    f"{name} expects an initial state of shape {expected} for this "
                    f"input; got {tuple(state.shape)}"
                )
        if not batched:
            states = [state[None] for state in states]
        return states[0], (states[1] if self.mixed_memory else None)

    def _per_step(
        self, value: mx.array, what: str, batch: int, length: int, batched: bool
    ) -> mx.array:
        """A ``(B, L)``-shaped per-step array (or ``(B, L, 1)``) as ``(B, L)``."""
        shape = tuple(value.shape)
        if batched:
            forms = [(batch, length), (batch, length, 1)]
            if not self.batch_first:
                forms = [(length, batch), (length, batch, 1)]
        else:
            forms = [(length,), (length, 1)]
        if shape not in forms:
            raise ModelError(
                f"{what} of shape {shape} fit neither {forms[0]} nor {forms[1]} "
                f"for an input of {batch} series of length {length}"
            )
        value = value.reshape(shape[:-1] if len(shape) == len(forms[1]) else shape)
        if not batched:
            return value[None]
        return value if self.batch_first else value.T

    def _mask(
        self, mask: Any, batch: int, length: int, batched: bool
    ) -> mx.array | None:
        if mask is None:
            return None
        if not isinstance(mask, mx.array):
            mask = mx.array(np.asarray(mask))
        return self._per_step(mask, "mask", batch, length, batched).astype(mx.bool_)

    def _elapsed(
        self,
        timespans: Any,
        batch: int,
        length: int,
        batched: bool,
        mask: mx.array | None,
    ) -> float | mx.array:
        if timespans is None:
            return 1.0
        if isinstance(timespans, (int, float)) and not isinstance(timespans, bool):
            _check_timespans(np.asarray(float(timespans)))
            return float(timespans)
        spans = as_float_array(timespans, "timespans")
        spans = self._per_step(spans, "timespans", batch, length, batched)
        _check_concrete_timespans(spans, mask)
        if mask is not None:
            # padded steps are carried over; a harmless 1 keeps NaN out of the
            # gradients that flow through them
            spans = mx.where(mask, spans, 1.0)
        return spans[:, :, None]

    # -- outputs -----------------------------------------------------------------

    def _finish(
        self,
        readout: mx.array,
        h: mx.array,
        c: mx.array | None,
        batched: bool,
    ) -> tuple[mx.array, Any]:
        if not batched:
            readout, h = readout[0], h[0]
            c = None if c is None else c[0]
        elif self.return_sequences and not self.batch_first:
            readout = readout.transpose(1, 0, 2)
        return readout, ((h, c) if self.mixed_memory else h)

    # -- configs and weights --------------------------------------------------

    def _units_config(self) -> Any:
        return self._units if isinstance(self._units, int) else None

    def config(self) -> dict[str, Any]:
        """A JSON-safe description from which :meth:`from_config` rebuilds the
        model: the class, the constructor arguments and the wiring's config."""
        args = {key: getattr(self, f"_arg_{key}") for key in self._config_keys}
        wiring = getattr(self.rnn_cell, "wiring", None)
        return {
            "format": CONFIG_FORMAT,
            "class": type(self).__name__,
            "input_size": self.input_size,
            "units": self._units_config(),
            "wiring": None if wiring is None else _wiring_record(wiring),
            "args": args,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> _SequenceModel:
        """Rebuild a model (fresh weights) from :meth:`config`."""
        if config.get("class") != cls.__name__:
            raise CheckpointError(
                f"config describes a {config.get('class')!r} model, not a "
                f"{cls.__name__!r}; use ncp_core.rnn.model_from_config"
            )
        if config.get("wiring") is not None:
            units: Any = _wiring_from_config(config["wiring"])
        else:
            units = config["units"]
        return cls(config["input_size"], units, **dict(config.get("args", {})))

    def load_weights(
        self, file_or_weights: str | Path | Sequence[tuple[str, mx.array]], strict=True
    ) -> _SequenceModel:
        """Load weights saved by :meth:`save_weights` (``.safetensors``/``.npz``).

        Raises:
            CheckpointError: a name that is not a parameter (masks are never
                loaded: they come from the wiring), a missing parameter
                (``strict``), or a shape that does not fit, which means the
                weights belong to a model of other sizes or another wiring.
        """
        weights: Any = file_or_weights
        if isinstance(weights, (str, Path)):
            loaded: Any = mx.load(str(weights))
            weights = list(loaded.items())
        elif isinstance(weights, Mapping):
            weights = list(weights.items())
        else:
            weights = list(weights)
        constants = [
            k for k, _ in weights if any(p.startswith("_") for p in k.split("."))
        ]
        if constants:
            raise CheckpointError(
                f"{sorted(constants)} are not parameters: masks and other "
                "constants come from the wiring and are never loaded"
            )
        parameters = dict(tree_flatten(self.parameters()))
        misfits = [
            f"{key}: {tuple(value.shape)} given, {tuple(parameters[key].shape)} here"
            for key, value in weights
            if key in parameters and tuple(value.shape) != tuple(parameters[key].shape)
        ]
        if misfits:
            raise CheckpointError(
                f"the weights do not fit this {type(self).__name__} "
                f"({'; '.join(misfits[:5])}); they come from a model with other "
                "sizes or another wiring: rebuild that model from its config"
            )
        try:
            super().load_weights(weights, strict=strict)
        except ValueError as error:
            raise CheckpointError(
                f"cannot load the weights into this {type(self).__name__}: {error}"
            ) from None
        return self


def _steps(x: mx.array, axis: int) -> list[mx.array]:
    """``x`` cut into its steps along ``axis`` (that axis removed).

    MLX's gradient of a slice (and of ``split``) is a full-size array of
    zeros with the slice written in, so taking every step of an ``L``-step
    array costs ``L²`` in the backward pass; here the gradient is one stack
    of the steps' gradients.
    """
    length = x.shape[axis]
    if length == 1:
        return [mx.squeeze(x, axis)]
    unstack = _UNSTACK.get((length, axis % x.ndim))
    if unstack is None:
        unstack = _UNSTACK[(length, axis % x.ndim)] = _make_unstack(
            length, axis % x.ndim
        )
    return list(unstack(x))


def _make_unstack(length: int, axis: int) -> Any:
    @mx.custom_function
    def unstack(x: mx.array) -> tuple[mx.array, ...]:
        index: list[Any] = [slice(None)] * axis
        return tuple(x[tuple([*index, t])] for t in range(length))

    @unstack.vjp
    def unstack_vjp(primals: Any, cotangents: Any, outputs: Any) -> mx.array:
        return mx.stack(list(cotangents), axis=axis)

    return unstack


_UNSTACK: dict[tuple[int, int], Any] = {}


def _check_timespans(values: np.ndarray) -> None:
    bad = ~(np.isfinite(values) & (values > 0))
    if np.any(bad):
        raise ModelError(
            f"timespans must be positive and finite where a series is observed; "
            f"got {values[bad].reshape(-1)[0]!r} ({int(bad.sum())} bad entries)"
        )


def _check_concrete_timespans(spans: mx.array, mask: mx.array | None) -> None:
    """Check the values when they can be read, i.e. outside ``mx.compile``.

    Inside a compiled or vmapped function arrays cannot be evaluated, so the
    check is skipped there; it runs on every eager call.
    """
    try:
        values = np.array(spans)
        observed = None if mask is None else np.array(mask)
    except ValueError:
        return
    _check_timespans(values if observed is None else values[observed])


class LTC(_SequenceModel):
    r"""A Liquid Time-Constant network over a sequence.

    For input ``BLF`` returns the motor outputs ``BLM`` (``BM`` without
    ``return_sequences``) and the final state ``BN`` (``(h, c)`` with mixed
    memory). Each step is :class:`~ncp_core.cells.LTCCell`; with mixed
    memory an :class:`~ncp_core.cells.LSTMCell` first updates ``(h, c)`` and
    the LTC step then starts from that ``h``.

    Args:
        input_size (int): ``F``.
        units (int | Wiring): A wiring, or a number of neurons for a
            :class:`~ncp_core.FullyConnected` wiring (every neuron a motor).
            The wiring is built with ``input_size``.
        return_sequences (bool): Every step's output, or only the last.
            Default: ``True``.
        batch_first (bool): ``BLF`` (else ``LBF``). Default: ``True``.
        mixed_memory (bool): Add an LSTM memory. Default: ``False``.
        input_mapping, output_mapping, ode_unfolds, epsilon: see
            :class:`~ncp_core.cells.LTCCell`.
        implicit_param_constraints (bool): Softplus on the positive
            parameters. Default: ``True`` (as the reference's sequence module).
        kernel (str): ``"auto"``, ``"native"``, ``"sparse"`` or ``"dense"``
            (see :class:`~ncp_core.cells.LTCCell`): ``"auto"`` runs whole
            sequences on the native CPU kernel where it can. Default:
            ``"auto"``.
    """

    _config_keys = (
        "return_sequences",
        "batch_first",
        "mixed_memory",
        "input_mapping",
        "output_mapping",
        "ode_unfolds",
        "epsilon",
        "implicit_param_constraints",
        "kernel",
    )

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        ode_unfolds: int = 6,
        epsilon: float = 1e-8,
        implicit_param_constraints: bool = True,
        kernel: str = "auto",
    ) -> None:
        super().__init__(input_size, units, return_sequences, batch_first, mixed_memory)
        self._units = units if isinstance(units, int) else None
        wiring = FullyConnected(units) if isinstance(units, int) else units
        self.rnn_cell = LTCCell(
            wiring,
            in_features=input_size,
            input_mapping=input_mapping,
            output_mapping=output_mapping,
            ode_unfolds=ode_unfolds,
            epsilon=epsilon,
            implicit_param_constraints=implicit_param_constraints,
            kernel=kernel,
        )
        if self.mixed_memory:
            self.lstm = LSTMCell(input_size, self.state_size)
        self._arg_return_sequences = self.return_sequences
        self._arg_batch_first = self.batch_first
        self._arg_mixed_memory = self.mixed_memory
        self._arg_input_mapping = input_mapping
        self._arg_output_mapping = output_mapping
        self._arg_ode_unfolds = int(ode_unfolds)
        self._arg_epsilon = float(epsilon)
        self._arg_implicit_param_constraints = bool(implicit_param_constraints)
        self._arg_kernel = kernel

    @property
    def wiring(self) -> Wiring:
        return self.rnn_cell.wiring

    @property
    def kernel(self) -> str:
        """The MLX synapse kernel, ``"dense"`` or ``"sparse"``: the one used
        where the native kernel cannot run (see :attr:`uses_native`)."""
        return self.rnn_cell.kernel

    @property
    def uses_native(self) -> bool:
        """Whether eager CPU calls run on the native kernel (without mixed
        memory); see :class:`~ncp_core.cells.LTCCell`."""
        return self.rnn_cell.uses_native and not self.mixed_memory

    def apply_weight_constraints(self) -> None:
        """See :meth:`LTCCell.apply_weight_constraints`."""
        self.rnn_cell.apply_weight_constraints()

    def set_wiring_masks(self, adjacency: Any = None, sensory_adjacency: Any = None):
        """See :meth:`LTCCell.set_wiring_masks`."""
        self.rnn_cell.set_wiring_masks(adjacency, sensory_adjacency)

    def set_synapse_gains(self, gains: Any = None, sensory_gains: Any = None):
        """See :meth:`LTCCell.set_synapse_gains`."""
        self.rnn_cell.set_synapse_gains(gains, sensory_gains)

    def __call__(
        self,
        x: Any,
        hx: Any = None,
        timespans: Any = None,
        mask: Any = None,
    ) -> tuple[mx.array, Any]:
        """Run the sequence.

        Args:
            x: ``(B, L, F)`` (``(L, B, F)`` if not ``batch_first``) or ``(L, F)``.
            hx: Initial state ``(B, N)`` (``(h, c)`` with mixed memory).
                Default: zeros.
            timespans: Elapsed time per step and sample, ``(B, L)`` or
                ``(B, L, 1)`` (``(L, B[, 1])`` if not ``batch_first``), or a
                number. Default: ``1``.
            mask: ``(B, L)`` bool; where False the step is skipped and the
                state carried, so a zero-padded series ends in the state of
                its last real step. Default: every step counts.

        Returns:
            ``(readout, final_state)``.

        Raises:
            ModelError: an input, state, timespans or mask of the wrong shape,
                or timespans that are not positive and finite where the mask
                is set. The values are checked on eager calls only: inside
                ``mx.compile`` they cannot be read.
        """
        x, h, c, elapsed, mask, batched = self._normalise(x, hx, timespans, mask)
        cell = self.rnn_cell
        length = x.shape[1]
        native_result = (
            None if self.mixed_memory else cell._native_run(x, h, elapsed, mask)
        )
        if native_result is not None:
            states, readout = native_result
            h = states[:, -1]
            if not self.return_sequences:
                readout = readout[:, -1]
            return self._finish(readout, h, c, batched)

        prepared = cell._prepare(x.shape[0])
        num_c, den_c = cell._drive(prepared, x)
        cm_t = cell._capacitance(prepared, elapsed)
        per_step_cm = not isinstance(elapsed, float)
        if not per_step_cm:
            cm_t = mx.broadcast_to(cm_t, cell._layout_shape(x.shape[0]))
        keep = None if mask is None else cell._steps_to_layout(mask[:, :, None])
        projected = self.lstm.input_map(x) if self.mixed_memory else None

        u = cell._to_layout(h)
        num_steps, den_steps = _steps(num_c, 0), _steps(den_c, 0)
        cm_steps = _steps(cm_t, 0) if per_step_cm else None
        lstm_steps = None if projected is None else _steps(projected, 1)
        states = []
        for t in range(length):
            start = u
            if lstm_steps is not None:
                h_new, c_new = self.lstm._step(lstm_steps[t], cell._from_layout(u), c)
                c = c_new if keep is None else mx.where(mask[:, t, None], c_new, c)
                start = cell._to_layout(h_new)
            step_cm = cm_steps[t] if cm_steps is not None else cm_t
            u_new = cell._solve(prepared, start, step_cm, num_steps[t], den_steps[t])
            u = u_new if keep is None else mx.where(keep[t], u_new, u)
            if self.return_sequences:
                states.append(u)

        h = cell._from_layout(u)
        if self.return_sequences:
            stacked = mx.stack(states)
            order = (2, 0, 1) if cell.kernel == "sparse" else (1, 0, 2)
            readout = cell._map_outputs(stacked.transpose(order))
        else:
            readout = cell._map_outputs(h)
        return self._finish(readout, h, c, batched)


class CfC(_SequenceModel):
    r"""A Closed-form Continuous-time network over a sequence.

    ``units`` an int gives a dense :class:`~ncp_core.cells.CfCCell` with a
    backbone; a wiring gives a :class:`~ncp_core.cells.WiredCfCCell` whose
    output is the motor neurons. For input ``BLF`` returns ``BLO`` (``BO``
    without ``return_sequences``), ``O`` the projection size, the motor size
    or ``units``, and the final state ``BN`` (``(h, c)`` with mixed memory).

    Args:
        input_size (int): ``F``.
        units (int | Wiring): Hidden size, or a wiring (built with ``input_size``).
        proj_size (int, optional): A linear projection of every output.
            Default: ``None``.
        return_sequences (bool): Default: ``True``.
        batch_first (bool): Default: ``True``.
        mixed_memory (bool): Add an LSTM memory. Default: ``False``.
        mode (str): ``"default"``, ``"pure"`` or ``"no_gate"``. Default:
            ``"default"``.
        activation (str): Backbone activation (dense only). Default:
            ``"lecun_tanh"``.
        backbone_units (int, optional): Dense only. Default: ``128``.
        backbone_layers (int, optional): Dense only. Default: ``1``.
        backbone_dropout (float, optional): Dense only. Default: ``0.0``.
        intra_layer (str): Wired only: ``"dense"`` or ``"wiring"`` recurrence
            within a layer (see :class:`~ncp_core.cells.WiredCfCCell`).
            Default: ``"dense"``.
    """

    _config_keys = (
        "proj_size",
        "return_sequences",
        "batch_first",
        "mixed_memory",
        "mode",
        "activation",
        "backbone_units",
        "backbone_layers",
        "backbone_dropout",
        "intra_layer",
    )

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        proj_size: int | None = None,
        return_sequences: bool = True,
        batch_first: bool = True,
        mixed_memory: bool = False,
        mode: str = "default",
        activation: str = "lecun_tanh",
        backbone_units: int | None = None,
        backbone_layers: int | None = None,
        backbone_dropout: float | None = None,
        intra_layer: str = "dense",
    ) -> None:
        super().__init__(input_size, units, return_sequences, batch_first, mixed_memory)
        check_mode(mode)
        self._units = units if isinstance(units, int) else None
        self.rnn_cell: CfCCell | WiredCfCCell
        if isinstance(units, Wiring):
            for name, value in (
                ("backbone_units", backbone_units),
                ("backbone_layers", backbone_layers),
                ("backbone_dropout", backbone_dropout),
            ):
                if value is not None:
                    raise ModelError(
                        f"{name}={value!r} cannot be used with a wiring: the wired "
                        "CfC has no backbone; leave it None or pass an int units"
                    )
            self.rnn_cell = WiredCfCCell(input_size, units, mode, intra_layer)
        else:
            get_activation(activation)
            self.rnn_cell = CfCCell(
                input_size,
                units,
                mode,
                activation,
                128 if backbone_units is None else backbone_units,
                1 if backbone_layers is None else backbone_layers,
                0.0 if backbone_dropout is None else backbone_dropout,
            )
        if self.mixed_memory:
            self.lstm = LSTMCell(input_size, self.state_size)
        if proj_size is not None:
            self.fc = nn.Linear(self.motor_size, check_size("proj_size", proj_size))
        self._arg_proj_size = proj_size
        self._arg_return_sequences = self.return_sequences
        self._arg_batch_first = self.batch_first
        self._arg_mixed_memory = self.mixed_memory
        self._arg_mode = mode
        self._arg_activation = activation
        self._arg_backbone_units = backbone_units
        self._arg_backbone_layers = backbone_layers
        self._arg_backbone_dropout = backbone_dropout
        self._arg_intra_layer = intra_layer

    @property
    def wiring(self) -> Wiring | None:
        """The wiring, ``None`` for a dense CfC."""
        return getattr(self.rnn_cell, "wiring", None)

    @property
    def motor_size(self) -> int:
        return self.rnn_cell.output_size

    @property
    def output_size(self) -> int:
        return self._arg_proj_size or self.motor_size

    @property
    def synapse_count(self) -> int:
        """Synapses of the wiring; ``units²`` for a dense CfC."""
        if self.wiring is None:
            return self.state_size * self.state_size
        return self.rnn_cell.synapse_count

    @property
    def sensory_synapse_count(self) -> int:
        """Sensory synapses of the wiring; ``input_size · units`` when dense."""
        if self.wiring is None:
            return self.input_size * self.state_size
        return self.rnn_cell.sensory_synapse_count

    def set_wiring_masks(self, adjacency: Any = None, sensory_adjacency: Any = None):
        """See :meth:`WiredCfCCell.set_wiring_masks` (wired models only)."""
        self._wired_only("set_wiring_masks").set_wiring_masks(
            adjacency, sensory_adjacency
        )

    def set_synapse_gains(self, gains: Any = None, sensory_gains: Any = None):
        """See :meth:`WiredCfCCell.set_synapse_gains` (wired models only)."""
        self._wired_only("set_synapse_gains").set_synapse_gains(gains, sensory_gains)

    @property
    def uses_native(self) -> bool:
        """Whether eager CPU calls run on the native kernel: a wired cell in
        mode ``default`` or ``no_gate``, without mixed memory."""
        cell = self.rnn_cell
        return (
            isinstance(cell, WiredCfCCell)
            and not self.mixed_memory
            and cell.uses_native
        )

    def _wired_only(self, what: str) -> WiredCfCCell:
        if not isinstance(self.rnn_cell, WiredCfCCell):
            raise ModelError(f"{what} needs a CfC built with a wiring, not int units")
        return self.rnn_cell

    def _readout(self, h: mx.array) -> mx.array:
        y = h[..., : self.motor_size]
        return self.fc(y) if "fc" in self else y

    def __call__(
        self,
        x: Any,
        hx: Any = None,
        timespans: Any = None,
        mask: Any = None,
    ) -> tuple[mx.array, Any]:
        """Run the sequence; arguments as :meth:`LTC.__call__`."""
        x, h, c, elapsed, mask, batched = self._normalise(x, hx, timespans, mask)
        cell = self.rnn_cell
        if isinstance(cell, WiredCfCCell) and not self.mixed_memory:
            # the whole sequence in one native call where it can run
            from ncp_core.native.cfc import cfc_sequence

            native = cfc_sequence(cell, x, h, elapsed, mask, self.return_sequences)
            if native is not None:
                y, h = native
                readout = self.fc(y) if "fc" in self else y
                return self._finish(readout, h, None, batched)
        prepared: Any = cell._prepare()
        projected = _steps(cell._project(prepared, x), 1)
        lstm_projected = (
            _steps(self.lstm.input_map(x), 1) if self.mixed_memory else None
        )
        spans = None if isinstance(elapsed, float) else _steps(elapsed, 1)
        if isinstance(cell, WiredCfCCell) and lstm_projected is None:
            return self._run_wired(cell, prepared, projected, h, elapsed, mask, batched)

        states = []
        for t in range(x.shape[1]):
            start = h
            if lstm_projected is not None:
                start, c_new = self.lstm._step(lstm_projected[t], h, c)
                c = c_new if mask is None else mx.where(mask[:, t, None], c_new, c)
            ts = elapsed if spans is None else spans[t]
            h_new = cell._step(prepared, projected[t], start, ts)
            h = h_new if mask is None else mx.where(mask[:, t, None], h_new, h)
            if self.return_sequences:
                states.append(h)

        readout = self._readout(mx.stack(states, axis=1) if states else h)
        return self._finish(readout, h, c, batched)

    def _run_wired(
        self,
        cell: WiredCfCCell,
        prepared: Any,
        projected: list[mx.array],
        h: mx.array,
        elapsed: float | mx.array,
        mask: mx.array | None,
        batched: bool,
    ) -> tuple[mx.array, Any]:
        """The wired CfC's loop: the state travels as one array per layer and
        only the motor neurons are kept per step."""
        layers = cell._split(h)
        spans = None if isinstance(elapsed, float) else _steps(elapsed, 1)
        outputs = []
        for t in range(len(projected)):
            ts = elapsed if spans is None else spans[t]
            new = cell._step_layers(prepared, projected[t], layers, ts)
            if mask is not None:
                keep = mask[:, t, None]
                new = [mx.where(keep, n, o) for n, o in zip(new, layers, strict=True)]
            layers = new
            if self.return_sequences:
                outputs.append(cell._motor(layers))
        h = cell._assemble(layers)
        y = mx.stack(outputs, axis=1) if outputs else cell._motor(layers)
        readout = self.fc(y) if "fc" in self else y
        return self._finish(readout, h, None, batched)


def model_from_config(config: Mapping[str, Any]) -> LTC | CfC:
    """Rebuild an :class:`LTC` or :class:`CfC` from its ``config()``."""
    classes: dict[str, type[LTC] | type[CfC]] = {"LTC": LTC, "CfC": CfC}
    name = config.get("class") if isinstance(config, Mapping) else None
    if name not in classes:
        raise CheckpointError(
            f"not a model config: class {name!r}; expected one of {sorted(classes)}"
        )
    return classes[name].from_config(config)  # type: ignore[return-value]
