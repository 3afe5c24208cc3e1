"""The wired CfC: one backbone-less CfC block per layer of a wiring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ncp_core.cells._checks import (
    as_float_array,
    check_matrix,
    check_polarity,
    check_step_shapes,
    elapsed_column,
)
from ncp_core.cells.cfc import CfCCell, check_mode
from ncp_core.errors import ModelError
from ncp_core.native.cfc import cfc_step
from ncp_core.native.cfc import supports as native_supports

__all__ = ["INTRA_LAYER", "WiredCfCCell"]

INTRA_LAYER = ("dense", "wiring")


@dataclass(frozen=True)
class _Layers:
    """Neuron ids per layer; ``blocks`` are their ``(start, stop)`` when every
    layer is an ascending id range (then slices replace gathers)."""

    ids: tuple[np.ndarray, ...]
    blocks: tuple[tuple[int, int], ...] | None


class WiredCfCCell(nn.Module):
    r"""A CfC whose connectivity follows a wiring's layers.

    Layer ``l`` (neuron ids ``L_l``, in the order of ``wiring.layers``, e.g.
    inter, command, motor for an NCP) is a :class:`CfCCell` without backbone
    whose input is the sensory input for ``l = 0`` and the new state of layer
    ``l - 1`` otherwise. Its ``ff1``/``ff2`` weights are masked by

    - the sensory synapses into ``L_0`` (``l = 0``) or the synapses
      ``L_{l-1} → L_l``, and
    - within the layer: every pair (``intra_layer="dense"``, as the
      reference) or only the wiring's own synapses ``L_l → L_l``
      (``intra_layer="wiring"``).

    ``time_a``/``time_b`` are unmasked, as in the reference. Synapses that
    skip a layer or run backwards are not used. Polarities only decide
    presence; their sign is not used.

    The state ``(B, N)`` is in **neuron-id order** (the reference keeps it in
    layer order); the output is the motor neurons, ids ``[0, M)``, so the
    output has ``M = wiring.output_dim`` features for every wiring. See
    :func:`ncp_core.cells.reference.to_layer_order` for the reference layout.

    Args:
        input_size (int, optional): ``S``; builds the wiring. Default: the
            wiring must already be built.
        wiring (Wiring): The connectivity, with layers that partition the
            neurons (one layer of all neurons if it declares none).
        mode (str): CfC mode, ``"default"``, ``"pure"`` or ``"no_gate"``.
            Default: ``"default"``.
        intra_layer (str): ``"dense"`` or ``"wiring"``. Default: ``"dense"``.
    """

    def __init__(
        self,
        input_size: int | None,
        wiring: Any,
        mode: str = "default",
        intra_layer: str = "dense",
    ) -> None:
        super().__init__()
        if input_size is not None:
            wiring.build(input_size)
        if not wiring.is_built():
            raise ModelError(
                f"the wiring {wiring!r} has no input size yet: pass input_size "
                "or call wiring.build(input_dim) first"
            )
        if intra_layer not in INTRA_LAYER:
            raise ModelError(
                f"unknown intra_layer {intra_layer!r}; use 'dense' or 'wiring'"
            )
        self.wiring = wiring
        self.mode = check_mode(mode)
        self._compiled_step: Callable[..., Any] | None = None
        self.intra_layer = intra_layer
        layer_ids = _layer_partition(wiring)
        self._layers = _Layers(tuple(layer_ids), _contiguous_blocks(layer_ids))
        self._polarity = np.asarray(wiring.adjacency, np.int8).copy()
        self._sensory_polarity = np.asarray(wiring.sensory_adjacency, np.int8).copy()

        for index, ids in enumerate(layer_ids):
            in_features = wiring.input_dim if index == 0 else layer_ids[index - 1].size
            cell = CfCCell(
                in_features,
                ids.size,
                mode,
                backbone_units=0,
                backbone_layers=0,
                sparsity_mask=self._layer_mask(index),
            )
            setattr(self, f"layer_{index}", cell)

        motor = np.arange(wiring.output_dim)
        self._motor_layer = next(
            (i for i, ids in enumerate(layer_ids) if np.array_equal(ids, motor)), None
        )
        order = np.concatenate(layer_ids)
        self._to_id_order = mx.array(np.argsort(order).astype(np.int32))
        self._index = [mx.array(ids.astype(np.int32)) for ids in layer_ids]
        if wiring.time_scales is not None:
            scales = np.asarray(wiring.time_scales, np.float32)
            self._time_scales = [mx.array(scales[ids]) for ids in layer_ids]

    # -- sizes ---------------------------------------------------------------

    @property
    def layers(self) -> list[CfCCell]:
        return [self[f"layer_{i}"] for i in range(len(self._layers.ids))]

    @property
    def num_layers(self) -> int:
        return len(self._layers.ids)

    @property
    def layer_sizes(self) -> list[int]:
        return [int(ids.size) for ids in self._layers.ids]

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
        return int(np.count_nonzero(self._polarity))

    @property
    def sensory_synapse_count(self) -> int:
        return int(np.count_nonzero(self._sensory_polarity))

    # -- masks and gains ----------------------------------------------------

    def _layer_mask(self, index: int) -> np.ndarray:
        """``(in + h, h)`` mask of layer ``index``, source rows, target columns."""
        ids = self._layers.ids[index]
        if index == 0:
            inputs = self._sensory_polarity[:, ids]
        else:
            inputs = self._polarity[np.ix_(self._layers.ids[index - 1], ids)]
        if self.intra_layer == "dense":
            intra = np.ones((ids.size, ids.size), np.int8)
        else:
            intra = self._polarity[np.ix_(ids, ids)]
        return np.concatenate([inputs, intra], axis=0)

    def set_wiring_masks(
        self, adjacency: Any = None, sensory_adjacency: Any = None
    ) -> None:
        """Take new synapse polarities; the layers stay as they are.

        Args:
            adjacency: ``(N, N)`` polarities. Default: the wiring's current one.
            sensory_adjacency: ``(S, N)``. Default: the wiring's current one.
        """
        n, s = self.state_size, self.sensory_size
        self._polarity = check_polarity(
            "adjacency",
            self.wiring.adjacency if adjacency is None else adjacency,
            (n, n),
        )
        self._sensory_polarity = check_polarity(
            "sensory_adjacency",
            self.wiring.sensory_adjacency
            if sensory_adjacency is None
            else sensory_adjacency,
            (s, n),
        )
        for index, cell in enumerate(self.layers):
            cell._sparsity_mask = mx.array(
                np.ascontiguousarray(
                    np.abs(self._layer_mask(index)).astype(np.float32).T
                )
            )

    def set_synapse_gains(self, gains: Any = None, sensory_gains: Any = None) -> None:
        """Multiply the ``ff1``/``ff2`` weight of each synapse by a gain.

        Intra-layer pairs take their gain from ``gains`` too, also where the
        wiring has no synapse (``intra_layer="dense"``).

        Args:
            gains: ``(N, N)`` float gains, source row. Default: all ones.
            sensory_gains: ``(S, N)`` float gains. Default: all ones.
        """
        n, s = self.state_size, self.sensory_size
        gains = (
            np.ones((n, n), np.float32)
            if gains is None
            else check_matrix("gains", gains, (n, n))
        )
        sensory_gains = (
            np.ones((s, n), np.float32)
            if sensory_gains is None
            else check_matrix("sensory_gains", sensory_gains, (s, n))
        )
        for index, (cell, ids) in enumerate(
            zip(self.layers, self._layers.ids, strict=True)
        ):
            if index == 0:
                inputs = sensory_gains[:, ids]
            else:
                inputs = gains[np.ix_(self._layers.ids[index - 1], ids)]
            intra = gains[np.ix_(ids, ids)]
            cell._synapse_gains = mx.array(
                np.ascontiguousarray(np.concatenate([inputs, intra], 0).T)
            )

    # -- the pieces of a step -------------------------------------------------

    def _prepare(self) -> list[dict[str, Any]]:
        return [cell._prepare() for cell in self.layers]

    def _project(self, prepared: list[dict[str, Any]], x: mx.array) -> mx.array:
        """The input's share of layer 0 for inputs ``(..., S)``."""
        return self.layers[0]._project(prepared[0], x)

    def _layer_state(self, h: mx.array, index: int) -> mx.array:
        if self._layers.blocks is not None:
            start, stop = self._layers.blocks[index]
            return h[:, start:stop]
        return mx.take(h, self._index[index], axis=1)

    def _step(
        self,
        prepared: list[dict[str, Any]],
        projected: mx.array,
        h: mx.array,
        ts: float | mx.array,
    ) -> mx.array:
        """The new id-ordered state from layer 0's projected input and ``h``."""
        return self._assemble(
            self._step_layers(prepared, projected, self._split(h), ts)
        )

    def _split(self, h: mx.array) -> list[mx.array]:
        """The id-ordered state ``(B, N)`` as one state per layer."""
        return [self._layer_state(h, index) for index in range(self.num_layers)]

    def _step_layers(
        self,
        prepared: list[dict[str, Any]],
        projected: mx.array,
        states: list[mx.array],
        ts: float | mx.array,
    ) -> list[mx.array]:
        """One step on per-layer states (what a sequence carries between steps,
        so that the state is never assembled and split again)."""
        new_states: list[mx.array] = []
        for index, cell in enumerate(self.layers):
            layer_ts = ts
            if "_time_scales" in self:
                layer_ts = ts / self._time_scales[index]
            if index > 0:
                projected = cell._project(prepared[index], new_states[-1])
            new_states.append(
                cell._step(prepared[index], projected, states[index], layer_ts)
            )
        return new_states

    def _motor(self, states: list[mx.array]) -> mx.array:
        """The motor neurons ``(B, M)`` (ids ``[0, M)``) from per-layer states."""
        if self._motor_layer is not None:
            return states[self._motor_layer]
        return self._assemble(states)[:, : self.motor_size]

    def _assemble(self, layer_states: list[mx.array]) -> mx.array:
        blocks = self._layers.blocks
        if blocks is not None:
            by_start = sorted(range(len(layer_states)), key=lambda i: blocks[i][0])
            return mx.concatenate([layer_states[i] for i in by_start], axis=-1)
        return mx.take(
            mx.concatenate(layer_states, axis=-1), self._to_id_order, axis=-1
        )

    @property
    def uses_native(self) -> bool:
        """Whether eager CPU calls run on the native kernel (modes default and
        no_gate, where it builds); see :mod:`ncp_core.native.cfc`."""
        return native_supports(self)

    def __call__(
        self,
        inputs: mx.array,
        state: mx.array,
        ts: Any = 1.0,
    ) -> tuple[mx.array, mx.array]:
        """One step: ``(B, S)`` inputs, ``(B, N)`` id-ordered state →
        ``((B, M) motor outputs, (B, N) new state)``."""
        inputs = as_float_array(inputs, "inputs")
        state = as_float_array(state, "state")
        check_step_shapes(
            "WiredCfCCell", inputs, state, self.sensory_size, self.state_size
        )
        ts = elapsed_column(ts, inputs.shape[0])
        native = cfc_step(self, inputs, state, ts)
        if native is not None:
            return native
        if isinstance(ts, float):
            # an array, not a constant: a new value must not retrace the step
            ts = mx.array(ts, dtype=mx.float32).reshape(1, 1)
        if self._compiled_step is None:
            # one compiled graph per call: at one step the number of kernels
            # and of Python calls is all that costs
            self._compiled_step = mx.compile(self._one_step, inputs=self.state)
        return cast(tuple[mx.array, mx.array], self._compiled_step(inputs, state, ts))

    def _one_step(
        self, inputs: mx.array, state: mx.array, ts: mx.array
    ) -> tuple[mx.array, mx.array]:
        prepared = self._prepare()
        h = self._step(prepared, self._project(prepared, inputs), state, ts)
        return h[:, : self.motor_size], h


def _layer_partition(wiring: Any) -> list[np.ndarray]:
    layers = [np.asarray(ids, np.int64) for ids in wiring.layers] or [
        np.arange(wiring.units)
    ]
    ids = np.concatenate(layers)
    if ids.size != wiring.units or not np.array_equal(
        np.sort(ids), np.arange(wiring.units)
    ):
        raise ModelError(
            f"the wired CfC needs layers that hold every neuron exactly once; "
            f"wiring {wiring!r} has layers of sizes {[int(x.size) for x in layers]} "
            f"over {wiring.units} units"
        )
    if any(layer.size == 0 for layer in layers):
        raise ModelError(f"wiring {wiring!r} has an empty layer")
    return layers


def _contiguous_blocks(
    layers: list[np.ndarray],
) -> tuple[tuple[int, int], ...] | None:
    """``(start, stop)`` per layer if every layer is an ascending id range."""
    blocks = []
    for ids in layers:
        if not np.array_equal(ids, np.arange(ids[0], ids[0] + ids.size)):
            return None
        blocks.append((int(ids[0]), int(ids[0] + ids.size)))
    return tuple(blocks)
