"""Run-time support for wirings that change while a model trains or runs.

A wired cell (:class:`~ncp_core.cells.LTCCell`, :class:`~ncp_core.cells.WiredCfCCell`)
keeps its wiring as constants: synapse masks and per-synapse gains, held in
``_``-prefixed entries of ``model.state``. They are inputs of a compiled
training step, not parameters, so they may change between steps. This module
gives families that change their wiring the pieces to do so:

- :func:`apply_wiring` and :func:`apply_gains` push a changed wiring, or new
  gains, into every wired cell of a model (a bare cell, an ``LTC``/``CfC``,
  or any module holding one), without rebuilding it;
- :func:`synapse_usage`, :func:`synapse_magnitudes`, :func:`growth_gradients`
  and :func:`synapse_scores` measure synapses, present and absent, for
  pruning and growing;
- :func:`synapse_parameter_mask` and :func:`mask_gradients` select the
  parameters of the synapses into a group of neurons, to restrict an update;
- :func:`run_with_gains` runs a sequence with *per-sample* gains computed
  from the state at every step (routing, gating);
- :class:`WiringTracker` keeps the files of a run from
  :func:`ncp_core.train.fit` in step with a wiring that changes, and
  :class:`WiringCallbacks` builds a wiring's own training callbacks from
  command-line options (``ncp train --adapt-every N``).

The helpers read and set the cells' masks and gains through the same pieces
of a step that the sequence modules use, so a result here equals what the
model computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from ncp_core.cells import LTCCell, WiredCfCCell
from ncp_core.cells.synapses import DenseSynapses, SparseSynapses
from ncp_core.errors import DataError, ModelError, WiringError
from ncp_core.train import Callback
from ncp_core.wiring import NeuronSelector, Wiring

__all__ = [
    "WiringCallbacks",
    "WiringTracker",
    "apply_gains",
    "apply_wiring",
    "growth_gradients",
    "mask_gradients",
    "run_dataset",
    "run_objective",
    "run_with_gains",
    "synapse_magnitudes",
    "synapse_parameter_mask",
    "synapse_scores",
    "synapse_usage",
    "wired_cells",
]

WiredCell = LTCCell | WiredCfCCell

# -- finding the cells ---------------------------------------------------------


def wired_cells(model: nn.Module, wiring: Wiring | None = None) -> list[WiredCell]:
    """The wired cells of ``model`` (itself included), in module order.

    Args:
        model (nn.Module): A cell, a sequence module or any module holding one.
        wiring (Wiring, optional): Keep only the cells built on this wiring
            object. Default: every wired cell.

    Raises:
        ModelError: no wired cell is found.
    """
    cells = [
        module
        for _, module in model.named_modules()
        if isinstance(module, (LTCCell, WiredCfCCell))
    ]
    if wiring is not None:
        cells = [cell for cell in cells if cell.wiring is wiring]
    if not cells:
        what = "" if wiring is None else f" built on the wiring {wiring!r}"
        raise ModelError(
            f"{type(model).__name__} holds no wired LTC or CfC cell{what}; build the "
            "model with a wiring (a CfC with int units has no synapse masks)"
        )
    return cells


def _layer_ids(cell: WiredCfCCell) -> list[np.ndarray]:
    wiring = cell.wiring
    return [np.asarray(ids, np.int64) for ids in wiring.layers] or [
        np.arange(wiring.units)
    ]


def _heads(layer: Any) -> list[str]:
    """Names of a CfC layer's head weights that the synapse mask scales."""
    return ["ff1"] if layer.mode == "pure" else ["ff1", "ff2"]


# -- masks and gains -----------------------------------------------------------


def apply_wiring(
    model: nn.Module,
    wiring: Wiring | None = None,
    *,
    keep_parameters: bool = False,
    new_synapses: str = "stored",
) -> int:
    """Push the current synapses of a wiring into the model's cells.

    Each cell takes the wiring's ``adjacency`` and ``sensory_adjacency`` as
    its masks (:meth:`~ncp_core.cells.LTCCell.set_wiring_masks`). Kept
    synapses keep their trained values; a synapse that appears or flips gets
    its reversal potential set to its new polarity, unless
    ``keep_parameters`` is set (to go back to a wiring whose parameters were
    saved with it, e.g. when restoring a checkpoint). A compiled training
    step sees the new masks at its next call.

    A new neuron-to-neuron synapse starts from the weights stored for it
    (its initial draw, or its values when it was last present) with
    ``new_synapses="stored"``, or from weight zero with ``"zero"``, so the
    model computes the same function right after the change (wired CfC:
    the ``ff1``/``ff2`` entries; LTC: the maximal conductance ``w`` when the
    constraints are explicit; under the implicit softplus constraint an LTC
    conductance cannot be zero and keeps its stored value).

    Args:
        model (nn.Module): The model.
        wiring (Wiring, optional): The wiring whose cells to update. Default:
            every wired cell, each with its own wiring.
        keep_parameters (bool): Leave every parameter as it is. Default:
            ``False``.
        new_synapses (str): ``"stored"`` or ``"zero"``. Default: ``"stored"``.

    Returns:
        int: The number of cells updated.
    """
    if new_synapses not in ("stored", "zero"):
        raise ModelError(
            f"new_synapses must be 'stored' or 'zero', got {new_synapses!r}"
        )
    cells = wired_cells(model, wiring)
    for cell in cells:
        saved = cell.parameters() if keep_parameters else None
        adjacency = np.asarray(cell.wiring.adjacency)
        grown = (adjacency != 0) & (cell._polarity == 0)
        cell.set_wiring_masks(adjacency, cell.wiring.sensory_adjacency)
        if saved is not None:
            cell.update(saved)
        elif new_synapses == "zero" and grown.any():
            _zero_weights(cell, grown)
    return len(cells)


def _zero_weights(cell: WiredCell, pairs: np.ndarray) -> None:
    """Set the weights of the ``(N, N)`` source-row ``pairs`` to zero."""
    if isinstance(cell, LTCCell):
        if not cell.implicit_param_constraints:
            cell.w = mx.where(mx.array(pairs), 0.0, cell.w)
        return
    # Pairs the cell uses whatever the wiring says (dense intra-layer) stay.
    pairs = pairs & _cell_usage(cell)
    layers = _layer_ids(cell)
    for index, (layer, ids) in enumerate(zip(cell.layers, layers, strict=True)):
        inputs = (
            np.zeros((layer.input_size, ids.size), bool)
            if index == 0
            else pairs[np.ix_(layers[index - 1], ids)]
        )
        chosen = np.concatenate([inputs, pairs[np.ix_(ids, ids)]], axis=0).T
        if not chosen.any():
            continue
        chosen = mx.array(chosen)
        for head in _heads(layer):
            linear = layer[head]
            linear.weight = mx.where(chosen, 0.0, linear.weight)


def apply_gains(
    model: nn.Module,
    gains: Any = None,
    sensory_gains: Any = None,
    *,
    wiring: Wiring | None = None,
) -> int:
    """Set per-synapse gains ``(N, N)`` (and ``(S, N)``) in the model's cells.

    A gain multiplies the maximal conductance (LTC) or the weight (wired
    CfC) of a synapse; ``None`` means all ones. Returns the number of cells.
    """
    cells = wired_cells(model, wiring)
    for cell in cells:
        cell.set_synapse_gains(gains, sensory_gains)
    return len(cells)


def _gain_matrices(cell: WiredCell) -> tuple[np.ndarray, np.ndarray]:
    """The cell's current ``(N, N)`` and ``(S, N)`` gains as NumPy arrays."""
    if isinstance(cell, LTCCell):
        return (
            np.array(cell._synapse_gains, np.float32),
            np.array(cell._sensory_synapse_gains, np.float32),
        )
    n, s = cell.state_size, cell.sensory_size
    gains = np.ones((n, n), np.float32)
    sensory = np.ones((s, n), np.float32)
    layers = _layer_ids(cell)
    for index, (layer, ids) in enumerate(zip(cell.layers, layers, strict=True)):
        scale = np.array(layer._synapse_gains, np.float32).T
        size = layer.input_size
        if index == 0:
            sensory[:, ids] = scale[:size]
        else:
            gains[np.ix_(layers[index - 1], ids)] = scale[:size]
        gains[np.ix_(ids, ids)] = scale[size:]
    return gains, sensory


def _assign_gains(cell: WiredCell, gains: mx.array, sensory: np.ndarray) -> None:
    """Install ``(N, N)`` gains as MLX operations, so they can be differentiated."""
    if isinstance(cell, LTCCell):
        cell._synapse_gains = gains
        return
    layers = _layer_ids(cell)
    for index, (layer, ids) in enumerate(zip(cell.layers, layers, strict=True)):
        columns = mx.array(ids.astype(np.int32))
        intra = mx.take(mx.take(gains, columns, axis=0), columns, axis=1)
        if index == 0:
            inputs = mx.array(sensory[:, ids])
        else:
            rows = mx.array(layers[index - 1].astype(np.int32))
            inputs = mx.take(mx.take(gains, rows, axis=0), columns, axis=1)
        layer._synapse_gains = mx.concatenate([inputs, intra], axis=0).T


# -- measuring synapses --------------------------------------------------------


def _cell_usage(cell: WiredCell) -> np.ndarray:
    n = cell.state_size
    if isinstance(cell, LTCCell):
        return np.ones((n, n), bool)
    used = np.zeros((n, n), bool)
    layers = _layer_ids(cell)
    for index, ids in enumerate(layers):
        if index > 0:
            used[np.ix_(layers[index - 1], ids)] = True
        if cell.intra_layer == "wiring":
            used[np.ix_(ids, ids)] = True
    return used


def synapse_usage(model: nn.Module, wiring: Wiring | None = None) -> np.ndarray:
    """``(N, N)`` bool: the neuron pairs whose synapse, present or not, the
    model would use.

    An LTC uses every pair. A wired CfC uses the pairs between consecutive
    layers and, with ``intra_layer="wiring"``, the pairs within a layer
    (with ``"dense"`` those are always on, whatever the wiring says).
    """
    cells = wired_cells(model, wiring)
    used = _cell_usage(cells[0])
    for cell in cells[1:]:
        used |= _cell_usage(cell)
    return used


def _cell_magnitudes(cell: WiredCell) -> np.ndarray:
    n = cell.state_size
    if isinstance(cell, LTCCell):
        w = cell.w
        w = nn.softplus(w) if cell.implicit_param_constraints else mx.maximum(w, 0.0)
        return np.abs(np.array(w * cell._synapse_gains, np.float64))
    out = np.full((n, n), np.nan)
    layers = _layer_ids(cell)
    for index, (layer, ids) in enumerate(zip(cell.layers, layers, strict=True)):
        squares = sum(mx.square(layer[head].weight) for head in _heads(layer))
        size = np.sqrt(np.array(squares, np.float64))
        size = (size * np.array(layer._synapse_gains, np.float64)).T
        if index > 0:
            out[np.ix_(layers[index - 1], ids)] = size[: layer.input_size]
        if cell.intra_layer == "wiring":
            out[np.ix_(ids, ids)] = size[layer.input_size :]
    return out


def synapse_magnitudes(model: nn.Module, wiring: Wiring | None = None) -> np.ndarray:
    """``(N, N)`` size of each neuron-to-neuron synapse's weight, source row.

    LTC: the maximal conductance ``|w_ij| · g_ij`` (after the softplus when
    the constraints are implicit). Wired CfC: ``sqrt(W1_ji² + W2_ji²) · g_ij``
    over the heads the synapse gates. Entries the model does not use (see
    :func:`synapse_usage`) are NaN. Absent synapses get the value their
    masked weights hold. With several cells the sizes add up.
    """
    cells = wired_cells(model, wiring)
    sizes = [_cell_magnitudes(cell) for cell in cells]
    if len(sizes) == 1:
        return sizes[0]
    stacked = np.stack(sizes)
    total = np.nansum(stacked, axis=0)
    return np.where(np.all(np.isnan(stacked), axis=0), np.nan, total)


def growth_gradients(
    model: nn.Module,
    loss_fn: Callable[..., Any],
    batch: Sequence[Any],
    polarity: Any = None,
    *,
    wiring: Wiring | None = None,
) -> np.ndarray:
    r"""``(N, N)`` first-order effect on the loss of switching each synapse on.

    With every usable pair unmasked and a gain ``g`` that is 1 on present
    synapses and 0 on absent ones (so the model computes exactly what it
    computes now), returns

    .. math::

        \left|\frac{\partial L}{\partial g_{ij}}\right|_{g = \mathbb{1}[A \neq 0]}

    For an absent synapse this is the rate at which the loss changes as the
    synapse is switched on with the weights it would start from (its stored,
    masked values), RigL's growth criterion for this parameterisation. For a
    present synapse it is the sensitivity to scaling it. Unused pairs (see
    :func:`synapse_usage`) are NaN. Parameters, masks and gains are as they
    were when this returns.

    Args:
        model (nn.Module): The model.
        loss_fn (callable): ``loss_fn(model, *batch)`` returning a scalar (or
            a tuple whose first item is the scalar).
        batch (sequence): The arguments after ``model``.
        polarity (array, optional): ``(N, N)`` polarity (-1/+1) an absent
            synapse would have if grown; it sets the LTC reversal potential
            used for the gradient. Default: ``+1`` everywhere.
        wiring (Wiring, optional): Which cells, as in :func:`wired_cells`.

    Raises:
        ModelError: no wired cell, or ``polarity`` of the wrong shape or with
            zeros where a synapse could grow.
    """
    cells = wired_cells(model, wiring)
    wiring = cells[0].wiring
    adjacency = np.asarray(wiring.adjacency, np.int8)
    sensory_adjacency = np.asarray(wiring.sensory_adjacency, np.int8)
    n = adjacency.shape[0]
    present = adjacency != 0
    usable = synapse_usage(model, wiring)
    if polarity is None:
        polarity = np.ones((n, n), np.int8)
    polarity = np.asarray(polarity)
    if polarity.shape != (n, n):
        raise ModelError(f"polarity must have shape {(n, n)}, got {polarity.shape}")
    open_pairs = usable & ~present
    if np.any(polarity[open_pairs] == 0) or not np.all(np.isin(polarity, (-1, 0, 1))):
        raise ModelError(
            "polarity must be -1 or +1 wherever a synapse could grow; pass the "
            "polarities new synapses would get"
        )
    candidate = np.where(present, adjacency, np.where(usable, polarity, 0))
    candidate = candidate.astype(np.int8)

    saved_parameters = model.parameters()
    saved_gains = [_gain_matrices(cell) for cell in cells]
    starts = [
        mx.array(np.where(present | ~usable, gains, 0.0).astype(np.float32))
        for gains, _ in saved_gains
    ]

    def objective(gains: list[mx.array]) -> mx.array:
        for cell, cell_gains, (_, sensory) in zip(
            cells, gains, saved_gains, strict=True
        ):
            _assign_gains(cell, cell_gains, sensory)
        loss = loss_fn(model, *batch)
        return loss[0] if isinstance(loss, tuple) else loss

    try:
        for cell in cells:
            cell.set_wiring_masks(candidate, sensory_adjacency)
        grads = mx.grad(objective)(starts)
        mx.eval(grads)
    finally:
        for cell, (gains, sensory) in zip(cells, saved_gains, strict=True):
            cell.set_wiring_masks(adjacency, sensory_adjacency)
            cell.set_synapse_gains(gains, sensory)
        model.update(saved_parameters)
    total = sum(np.abs(np.array(g, np.float64)) for g in grads)
    return np.where(usable, total, np.nan)


def synapse_scores(
    model: nn.Module,
    loss_fn: Callable[..., Any],
    batch: Sequence[Any],
    polarity: Any = None,
    *,
    wiring: Wiring | None = None,
) -> np.ndarray:
    """``(N, N)`` scores for pruning and growing, as SET and RigL use them.

    A present synapse scores its weight's magnitude
    (:func:`synapse_magnitudes`), an absent one the magnitude of the
    loss gradient for switching it on (:func:`growth_gradients`); pairs the
    model does not use are NaN. Arguments as :func:`growth_gradients`.
    """
    cells = wired_cells(model, wiring)
    wiring = cells[0].wiring
    magnitudes = synapse_magnitudes(model, wiring)
    gradients = growth_gradients(model, loss_fn, batch, polarity, wiring=wiring)
    return np.where(np.asarray(wiring.adjacency) != 0, magnitudes, gradients)


# -- parameter subsets by neuron group ---------------------------------------


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _ltc_masks(
    cell: LTCCell, targets: np.ndarray, neurons: bool
) -> dict[str, np.ndarray]:
    n, s, m = cell.state_size, cell.sensory_size, cell.motor_size
    chosen = np.zeros(n, np.float32)
    chosen[targets] = 1.0
    masks = {
        name: np.broadcast_to(chosen, (rows, n))
        for name, rows in (
            ("w", n),
            ("sigma", n),
            ("mu", n),
            ("erev", n),
            ("sensory_w", s),
            ("sensory_sigma", s),
            ("sensory_mu", s),
            ("sensory_erev", s),
        )
    }
    if neurons:
        masks.update(gleak=chosen, vleak=chosen, cm=chosen)
        masks.update(output_w=chosen[:m], output_b=chosen[:m])
    return masks


def _cfc_masks(
    cell: WiredCfCCell, targets: np.ndarray, neurons: bool
) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    chosen = np.zeros(cell.state_size, bool)
    chosen[targets] = True
    for index, (layer, ids) in enumerate(
        zip(cell.layers, _layer_ids(cell), strict=True)
    ):
        rows = chosen[ids].astype(np.float32)
        heads = ["ff1"] if layer.mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]
        features = layer.input_size + layer.hidden_size
        for head in heads:
            masks[f"layer_{index}.{head}.weight"] = np.broadcast_to(
                rows[:, None], (rows.size, features)
            )
            if neurons:
                masks[f"layer_{index}.{head}.bias"] = rows
        if neurons and layer.mode == "pure":
            masks[f"layer_{index}.w_tau"] = rows[None, :]
            masks[f"layer_{index}.A"] = rows[None, :]
    return masks


def synapse_parameter_mask(
    model: nn.Module,
    targets: NeuronSelector,
    *,
    neuron_parameters: bool = False,
    wiring: Wiring | None = None,
) -> dict[str, Any]:
    """0/1 arrays selecting the parameters of the synapses into ``targets``.

    The result has the structure of ``model.trainable_parameters()``, so
    ``mask_gradients(grads, mask)`` restricts an update to those synapses:

    - LTC: the columns ``j ∈ targets`` of ``w, sigma, mu, erev`` and of
      their ``sensory_`` counterparts;
    - wired CfC: the rows of the target neurons in each layer's ``ff1``,
      ``ff2``, ``time_a`` and ``time_b`` weights (every input of a target
      neuron, from the layer before and from within its layer).

    Everything else (other neurons' synapses, input mappings, heads outside
    the cells) is 0.

    Args:
        model (nn.Module): The model.
        targets: A group name of the wiring, or neuron ids.
        neuron_parameters (bool): Also select the target neurons' own
            parameters (LTC ``gleak, vleak, cm`` and output mapping; CfC
            biases). Default: ``False``.
        wiring (Wiring, optional): Which cells, as in :func:`wired_cells`.
    """
    cells = wired_cells(model, wiring)
    names = {id(module): name for name, module in model.named_modules()}
    leaves: Any = tree_flatten(model.trainable_parameters())
    flat = {key: np.zeros(value.shape, np.float32) for key, value in leaves}
    for cell in cells:
        ids = cell.wiring.neurons(targets)
        if isinstance(cell, LTCCell):
            masks = _ltc_masks(cell, ids, neuron_parameters)
        else:
            masks = _cfc_masks(cell, ids, neuron_parameters)
        prefix = names[id(cell)]
        for name, mask in masks.items():
            key = _prefixed(prefix, name)
            if key in flat:
                flat[key] = np.maximum(flat[key], mask)
    return tree_unflatten([(key, mx.array(value)) for key, value in flat.items()])


def mask_gradients(grads: Any, mask: Any) -> Any:
    """``grads`` times ``mask`` leaf by leaf (e.g. a
    :func:`synapse_parameter_mask`)."""
    return tree_map(lambda g, m: g * m, grads, mask)


# -- per-sample gains ----------------------------------------------------------


def _gated_product(x: mx.array, w: mx.array, gains: mx.array, heads: int) -> mx.array:
    """``x (B, I) @ (w (I, K) ∘ gains)`` per sample; ``gains (B, I, H)`` scale
    the first ``heads`` blocks of ``H`` columns of ``w``."""
    hidden = gains.shape[-1]
    blocks = w.shape[1] // hidden
    scale = mx.concatenate(
        [gains] * heads + [mx.ones_like(gains)] * (blocks - heads), axis=-1
    )
    return mx.sum(x[:, :, None] * scale * w, axis=1)


def _ltc_with_gains(
    model: Any,
    x: mx.array,
    h: mx.array,
    gain_fn: Callable[[mx.array], mx.array | None],
) -> tuple[list[mx.array], mx.array]:
    cell = model.rnn_cell
    prepared = cell._prepare()
    num_c, den_c = cell._drive(prepared, x)
    cm_t = cell._capacitance(prepared, 1.0)
    synapses = prepared["synapses"]
    u = cell._to_layout(h)
    states = []
    for t in range(x.shape[1]):
        gains = gain_fn(cell._from_layout(u))
        step = prepared
        if gains is not None:
            gated: DenseSynapses | SparseSynapses
            if isinstance(synapses, DenseSynapses):
                gated = synapses._replace(w=synapses.w * gains)
            else:
                assert isinstance(synapses, SparseSynapses)
                flat = cell._edges["flat"]
                per_edge = mx.take(gains.reshape(gains.shape[0], -1), flat, axis=1)
                gated = synapses._replace(w=synapses.w * per_edge.T)
            step = {**prepared, "synapses": gated}
        u = cell._solve(step, u, cm_t, num_c[t], den_c[t])
        states.append(cell._from_layout(u))
    return states, cell._from_layout(u)


def _cfc_with_gains(
    model: Any,
    x: mx.array,
    h: mx.array,
    gain_fn: Callable[[mx.array], mx.array | None],
) -> tuple[list[mx.array], mx.array]:
    cell = model.rnn_cell
    prepared = cell._prepare()
    projected = cell._project(prepared, x)
    layers = _layer_ids(cell)
    index_arrays = [mx.array(ids.astype(np.int32)) for ids in layers]
    states = []
    for t in range(x.shape[1]):
        gains = gain_fn(h)
        new_states: list[mx.array] = []
        for index, layer in enumerate(cell.layers):
            pieces = prepared[index]
            heads = len(_heads(layer))
            ids = index_arrays[index]
            h_layer = cell._layer_state(h, index)
            if gains is None:
                z = (
                    projected[:, t]
                    if index == 0
                    else layer._project(pieces, new_states[-1])
                ) + h_layer @ pieces["w_h"]
            else:
                rows = mx.take(gains, ids, axis=1)
                intra = mx.take(rows, ids, axis=2)
                if index == 0:
                    drive = projected[:, t]
                else:
                    previous = mx.take(
                        mx.take(gains, index_arrays[index - 1], axis=1), ids, axis=2
                    )
                    drive = (
                        _gated_product(new_states[-1], pieces["w_x"], previous, heads)
                        + pieces["b"]
                    )
                z = drive + _gated_product(h_layer, pieces["w_h"], intra, heads)
            layer_ts: Any = 1.0
            if "_time_scales" in cell:
                layer_ts = 1.0 / cell._time_scales[index]
            new_states.append(layer._heads(z, layer_ts))
        h = cell._assemble(new_states)
        states.append(h)
    return states, h


def run_with_gains(
    model: nn.Module,
    x: Any,
    gain_fn: Callable[[mx.array], mx.array | None],
    hx: Any = None,
) -> tuple[mx.array, mx.array]:
    r"""Run a wired ``LTC``/``CfC`` with gains that change every step and sample.

    Before step ``t`` the gains are computed from the state,
    ``G_t = gain_fn(h_{t-1})`` of shape ``(B, N, N)`` (source row), and
    scale each neuron-to-neuron synapse of sample ``b`` on top of the cell's
    own gains: ``w_ij → G_t[b, i, j] · w_ij``. ``gain_fn`` may return
    ``None`` for a step without extra gains. Everything is differentiable,
    so parameters used by ``gain_fn`` are trained through the model's loss.
    Sensory synapses keep the cell's gains.

    Args:
        model (LTC | CfC): A batch-first sequence module built with a wiring,
            without mixed memory.
        x (array): ``(B, L, F)`` inputs, elapsed time 1 per step.
        gain_fn (callable): ``(B, N)`` state → ``(B, N, N)`` gains or ``None``.
        hx (array, optional): ``(B, N)`` initial state. Default: zeros.

    Returns:
        ``(readout, final_state)``: the readout of every step ``(B, L, O)``
        (the last step ``(B, O)`` if the model does not return sequences)
        and ``(B, N)``.
    """
    cell = getattr(model, "rnn_cell", None)
    if not isinstance(cell, (LTCCell, WiredCfCCell)):
        raise ModelError(
            f"run_with_gains needs an LTC or CfC built with a wiring, got "
            f"{type(model).__name__}"
        )
    if getattr(model, "mixed_memory", False) or not getattr(model, "batch_first", True):
        raise ModelError(
            "run_with_gains needs a batch-first model without mixed memory"
        )
    x = mx.array(x) if not isinstance(x, mx.array) else x
    if x.ndim != 3 or x.shape[2] != cell.sensory_size:
        raise ModelError(
            f"run_with_gains expects inputs (batch, length, {cell.sensory_size}), "
            f"got {tuple(x.shape)}"
        )
    h = mx.zeros((x.shape[0], cell.state_size)) if hx is None else hx
    if isinstance(cell, LTCCell):
        states, h = _ltc_with_gains(model, x, h, gain_fn)
        readout = cell._map_outputs(mx.stack(states, axis=1))
    else:
        states, h = _cfc_with_gains(model, x, h, gain_fn)
        readout = model._readout(mx.stack(states, axis=1))
    if not getattr(model, "return_sequences", True):
        readout = readout[:, -1]
    return readout, h


# -- training runs -------------------------------------------------------------


def run_dataset(run: Any, data: Any = None) -> Any:
    """The :class:`~ncp_core.data.SequenceDataset` a run trains on.

    Args:
        run (ncp_core.train.Run): The run.
        data (SequenceDataset | str, optional): The dataset, or its registered
            name or file. Default: as recorded in the run's config.

    Raises:
        DataError: the run was given an in-memory dataset and ``data`` is None.
    """
    from ncp_core.data import SequenceDataset
    from ncp_core.plugins import load_dataset

    if data is None:
        record = run.config["data"]
        if record.get("kind") == "memory":
            raise DataError(
                f"run was trained on an in-memory dataset '{record.get('name')}'; "
                "give the callback the dataset with data=..."
            )
        data = record["source"]
    return data if isinstance(data, SequenceDataset) else load_dataset(str(data))


def run_objective(
    run: Any,
    size: int = 64,
    seed: int = 0,
    data: Any = None,
) -> tuple[Callable[..., mx.array], tuple[Any, ...]]:
    """A loss and a batch of a run's training data, for scoring its model.

    The batch is ``size`` training series drawn with ``seed``, prepared as
    the run prepares its data (its standardiser, label order and target
    scaling); the loss is the run's (cross-entropy, or mean squared error
    over the observed steps).

    Args:
        run (ncp_core.train.Run): A run being trained.
        size (int): Series in the batch. Default: ``64``.
        seed (int): Seed of the draw. Default: ``0``.
        data (SequenceDataset | str, optional): The dataset when the run was
            given one in memory. Default: as recorded in the run.

    Returns:
        ``(loss_fn, batch)`` with ``loss_fn(model, *batch)``.
    """
    dataset = run_dataset(run, data)
    count = len(dataset.X_train)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(count)[: min(size, count)])
    m = np.asarray(dataset.mask_train[index], bool)
    x = np.where(m[:, :, None], np.asarray(dataset.X_train[index], np.float32), 0.0)
    x = run.standardizer.transform(x, m)
    spans = dataset.timespans_train
    spans = None if spans is None else mx.array(np.asarray(spans[index], np.float32))
    labels = np.asarray(dataset.y_train)[index]
    classification = run.task == "classification"
    if classification:
        lookup = {str(c): i for i, c in enumerate(run.classes or [])}
        y = mx.array(np.array([lookup[str(v)] for v in labels.tolist()], np.int32))
    else:
        values = labels.astype(np.float32)
        values = values[:, None] if values.ndim == 1 else values
        y = mx.array(run.target_scaler.transform(values))

    def loss_fn(model: nn.Module, x, mask, spans, y) -> mx.array:
        out = model(x, mask, spans)
        if classification:
            return nn.losses.cross_entropy(out, y, reduction="mean")
        if out.ndim == 3:
            weight = mask[..., None].astype(out.dtype)
            total = mx.maximum(mx.sum(weight), 1.0) * out.shape[-1]
            return mx.sum(mx.square(out - y) * weight) / total
        return mx.mean(mx.square(out - y))

    return loss_fn, (mx.array(x), mx.array(m), spans, y)


class WiringTracker(Callback):
    """Keeps a run's files in step with a wiring that changes while it trains.

    Subclasses change ``run.wiring`` in :meth:`change`; this class pushes the
    change into the model and keeps the three places a wiring is saved
    consistent with the weights saved beside it:

    - ``config.json`` records the wiring of the *best* weights
      (``model.safetensors``), so :func:`~ncp_core.train.load_run` rebuilds
      the model those weights belong to;
    - the checkpoint folder gets ``wiring.json`` with the wiring of the
      checkpoint's weights (and of the best ones), read back on resume;
    - when training ends, the best weights are back in the model
      (:func:`ncp_core.train.fit` does that) and this class puts their wiring
      back too, and re-scores the test split if the wiring differed.

    Args:
        data (SequenceDataset | str, optional): The run's dataset, needed only
            for a run trained on an in-memory dataset. Default: as recorded.
        new_synapses (str): How synapses that appear start, see
            :func:`apply_wiring`. Default: ``"stored"``.
    """

    CHECKPOINT_FILE = "wiring.json"

    def __init__(self, data: Any = None, new_synapses: str = "stored") -> None:
        self.data = data
        self.new_synapses = new_synapses
        self._best: dict[str, Any] | None = None

    def change(self, run: Any, epoch: int, logs: Mapping[str, Any]) -> bool:
        """Change ``run.wiring`` after ``epoch``; return whether it changed.

        The base class changes nothing.
        """
        return False

    # -- hooks

    def on_train_begin(self, run: Any) -> None:
        resumed = self._read_checkpoint(run)
        if resumed is not None:
            _restore(run.wiring, resumed["current"])
            apply_wiring(run.model, run.wiring, keep_parameters=True)
            run.model_changed()
            self._best = resumed["best"]
        if self._best is None:
            self._best = _record(run.wiring)

    def on_epoch_end(self, run: Any, epoch: int, logs: Mapping[str, Any]) -> None:
        if logs.get("best"):
            self._best = _record(run.wiring)
            self._write_config(run)
        if self.change(run, epoch, logs):
            apply_wiring(run.model, run.wiring, new_synapses=self.new_synapses)
            run.model_changed()

    def on_checkpoint(self, run: Any, epoch: int, path: Path) -> None:
        from ncp_core.runs import atomic_write_json

        atomic_write_json(
            Path(path) / self.CHECKPOINT_FILE,
            {"epoch": epoch, "current": _record(run.wiring), "best": self._best},
        )

    def on_train_end(self, run: Any, logs: Mapping[str, Any]) -> None:
        best = self._best
        if best is None:
            return
        differed = not np.array_equal(
            np.asarray(best["adjacency"], np.int8), run.wiring.adjacency
        ) or not np.array_equal(
            np.asarray(best["sensory_adjacency"], np.int8), run.wiring.sensory_adjacency
        )
        _restore(run.wiring, best)
        apply_wiring(run.model, run.wiring, keep_parameters=True)
        self._write_config(run)
        if differed and run.summary.get("test"):
            self._rescore(run)

    # -- files

    def _write_config(self, run: Any) -> None:
        run.config["wiring"] = self._best
        if run.path is not None and getattr(run, "is_writer", True):
            from ncp_core.runs import RunFolder

            config = {k: v for k, v in run.config.items() if k != "format"}
            RunFolder(run.path).write_config(config)

    def _read_checkpoint(self, run: Any) -> dict[str, Any] | None:
        if run.path is None or not run.epoch:
            return None
        from ncp_core.runs import CHECKPOINT_DIR, read_json

        path = Path(run.path) / CHECKPOINT_DIR / self.CHECKPOINT_FILE
        if not path.is_file():
            return None
        state = read_json(path, "wiring checkpoint")
        if not isinstance(state, dict) or state.get("epoch") != run.epoch:
            return None
        return state

    def _rescore(self, run: Any) -> None:
        # XXX: fit scores the test split (and draws its plots) before
        # on_train_end, with the last wiring; a hook right after the best
        # weights are restored would make this second scoring unnecessary.
        from ncp_core.train import evaluate

        scores = evaluate(run, run_dataset(run, self.data), "test")
        run.metrics = scores
        run.summary["test"] = scores
        run.summary["wiring"] = run.wiring.summary()
        if run.path is not None and getattr(run, "is_writer", True):
            from ncp_core.runs import RunFolder

            RunFolder(run.path).write_summary(run.summary)


def _record(wiring: Wiring) -> dict[str, Any]:
    from ncp_core.plugins import wiring_record

    return wiring_record(wiring)


def _restore(wiring: Wiring, record: Mapping[str, Any]) -> None:
    """Put the structure stored in ``record`` into ``wiring`` in place."""
    wiring._restore(record)


class WiringCallbacks(Callback):
    """The training callbacks a wiring asks for, built from plain options.

    When training begins, calls ``run.wiring.training_callbacks(**options)``
    and forwards every hook to the callbacks it returns. This lets a command
    line pass options such as ``adapt_every`` without knowing which wiring
    will use them. Options that are ``None`` are left out, so the wiring's
    defaults apply.

    Raises:
        WiringError: (when training begins) options were given but the wiring
            has no ``training_callbacks``.
    """

    def __init__(self, **options: Any) -> None:
        self.options = {k: v for k, v in options.items() if v is not None}
        self.callbacks: list[Callback] = []

    def on_train_begin(self, run: Any) -> None:
        factory = getattr(run.wiring, "training_callbacks", None)
        if factory is None:
            if self.options:
                given = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
                raise WiringError(
                    f"wiring {run.wiring.name!r} does not change during training, "
                    f"so {given} cannot apply; choose a wiring that defines "
                    "training_callbacks() or drop the options"
                )
            self.callbacks = []
        else:
            self.callbacks = list(factory(**self.options))
        for callback in self.callbacks:
            callback.on_train_begin(run)

    def _forward(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def on_epoch_begin(self, run: Any, epoch: int) -> None:
        self._forward("on_epoch_begin", run, epoch)

    def on_step_end(self, run: Any, step: int, logs: Mapping[str, Any]) -> None:
        self._forward("on_step_end", run, step, logs)

    def on_epoch_end(self, run: Any, epoch: int, logs: Mapping[str, Any]) -> None:
        self._forward("on_epoch_end", run, epoch, logs)

    def on_checkpoint(self, run: Any, epoch: int, path: Path) -> None:
        self._forward("on_checkpoint", run, epoch, path)

    def on_train_end(self, run: Any, logs: Mapping[str, Any]) -> None:
        self._forward("on_train_end", run, logs)
