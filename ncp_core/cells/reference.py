"""Bridges to the PyTorch reference, ``ncps`` 1.0.1: names and state layouts.

Parameter names are the reference's ``state_dict`` names, with one exception:
the reference's backbone is a ``Sequential`` whose Linear layers sit at
indices 0, 2, 4... (or 0, 2, 5, 8... with dropout), ours is a list of Linear
layers. So

==========================================  ================================
reference                                   ncp
==========================================  ================================
``rnn_cell.backbone.<j>.weight``             ``rnn_cell.backbone.layers.<k>.weight``
  (``j`` the k-th Linear index present)
``rnn_cell.sparsity_mask`` and the like      not a parameter: derived from the
                                             wiring, compared, never loaded
everything else                              the same name
==========================================  ================================

The wired CfC keeps its state in neuron-id order; the reference keeps it in
layer order (:func:`to_layer_order`, :func:`from_layer_order`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ncp_core.errors import CheckpointError

__all__ = [
    "backbone_ordinals",
    "from_layer_order",
    "load_reference_state_dict",
    "reference_key_to_ours",
    "to_layer_order",
]

_BACKBONE = re.compile(
    r"^(?P<prefix>(?:.*\.)?)backbone\.(?P<index>\d+)\.(?P<leaf>\w+)$"
)
_MASKS = ("sparsity_mask", "sensory_sparsity_mask")


def _layer_permutation(wiring: Any) -> np.ndarray:
    layers = [np.asarray(ids) for ids in wiring.layers] or [np.arange(wiring.units)]
    return np.concatenate(layers).astype(np.int32)


def to_layer_order(state: Any, wiring: Any) -> mx.array:
    """An id-ordered wired-CfC state ``(..., N)`` in the reference's layer order."""
    return mx.take(mx.array(state), mx.array(_layer_permutation(wiring)), axis=-1)


def from_layer_order(state: Any, wiring: Any) -> mx.array:
    """A reference (layer-ordered) wired-CfC state ``(..., N)`` in id order."""
    inverse = np.argsort(_layer_permutation(wiring)).astype(np.int32)
    return mx.take(mx.array(state), mx.array(inverse), axis=-1)


def backbone_ordinals(keys: list[str]) -> dict[tuple[str, int], int]:
    """``(prefix, sequential index) → k`` for the reference's backbone Linears."""
    indices: dict[str, set[int]] = {}
    for key in keys:
        match = _BACKBONE.match(key)
        if match:
            indices.setdefault(match["prefix"], set()).add(int(match["index"]))
    return {
        (prefix, index): k
        for prefix, found in indices.items()
        for k, index in enumerate(sorted(found))
    }


def reference_key_to_ours(
    key: str, backbone_ordinals: Mapping[tuple[str, int], int] | None = None
) -> str:
    """Our parameter name for a reference ``state_dict`` key.

    ``backbone_ordinals`` maps ``(prefix, index)`` to the layer number; by
    default the Sequential indices 0, 2, 4... of a dropout-free backbone.
    """
    match = _BACKBONE.match(key)
    if not match:
        return key
    index = int(match["index"])
    if backbone_ordinals is None:
        layer = index // 2
    else:
        layer = backbone_ordinals[(match["prefix"], index)]
    return f"{match['prefix']}backbone.layers.{layer}.{match['leaf']}"


def load_reference_state_dict(
    model: nn.Module,
    state: Mapping[str, Any],
    *,
    check_masks: bool = True,
) -> nn.Module:
    """Load a reference ``state_dict`` (names → numpy arrays) into ``model``.

    Every trainable parameter must be given, with its shape. The reference's
    sparsity masks are not loaded: the model's masks come from its wiring.
    With ``check_masks`` they must agree with it, so weights trained on
    another wiring are refused instead of silently mixed.

    Args:
        model: An :class:`~ncp_core.LTC`, :class:`~ncp_core.CfC` or a cell.
        state: ``{name: array}``, e.g. ``{k: v.numpy() for k, v in
            torch_model.state_dict().items()}``.
        check_masks (bool): Compare the masks with the model's. Default: ``True``.

    Returns:
        The model.

    Raises:
        CheckpointError: an unknown or missing name, a shape that does not
            fit, or a mask that differs from the model's wiring.
    """
    parameters = dict(tree_flatten(model.parameters()))
    constants = dict(tree_flatten(model.state))
    ordinals = backbone_ordinals(list(state))

    loaded: dict[str, mx.array] = {}
    unknown = []
    for key, value in state.items():
        array = np.asarray(value)
        prefix, _, leaf = key.rpartition(".")
        if leaf in _MASKS:
            ours = f"{prefix}._{leaf}" if prefix else f"_{leaf}"
            if ours not in constants:
                raise CheckpointError(
                    f"{key}: the model has no such mask ({ours}); the weights "
                    "come from a model of another kind"
                )
            if check_masks:
                _compare_mask(key, array, np.asarray(constants[ours]))
            continue
        name = reference_key_to_ours(key, ordinals)
        if name not in parameters:
            unknown.append(key)
            continue
        if tuple(array.shape) != tuple(parameters[name].shape):
            raise CheckpointError(
                f"{key} has shape {tuple(array.shape)} but {name} of the model has "
                f"shape {tuple(parameters[name].shape)}; build the model with the "
                "sizes and wiring of the reference model"
            )
        loaded[name] = mx.array(array.astype(np.float32))

    missing = sorted(set(parameters) - set(loaded))
    if unknown or missing:
        raise CheckpointError(
            f"the state dict does not fit the model: unknown names {sorted(unknown)}, "
            f"missing parameters {missing}"
        )
    model.update(tree_unflatten(list(loaded.items())))
    return model


def _compare_mask(key: str, given: np.ndarray, ours: np.ndarray) -> None:
    if given.shape != ours.shape or not np.array_equal(given != 0, ours != 0):
        raise CheckpointError(
            f"{key} differs from the model's mask ({int(np.count_nonzero(given))} "
            f"synapses of shape {given.shape} given, the model's wiring has "
            f"{int(np.count_nonzero(ours))} of shape {ours.shape}); masks are not "
            "loaded from weights: build the model with the reference's wiring, "
            "or pass check_masks=False to load the weights anyway"
        )
