"""The Closed-form Continuous-time cell (CfC), torch-reference numerics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ncp_core.cells._checks import (
    as_float_array,
    check_matrix,
    check_size,
    check_step_shapes,
    elapsed_column,
)
from ncp_core.cells.synapses import sigmoid_values, tanh
from ncp_core.errors import ModelError

__all__ = ["ACTIVATIONS", "MODES", "Backbone", "CfCCell", "lecun_tanh"]

MODES = ("default", "pure", "no_gate")


def lecun_tanh(x: mx.array) -> mx.array:
    """LeCun's scaled tanh, ``1.7159 · tanh(0.666 x)``."""
    return 1.7159 * tanh(0.666 * x)


ACTIVATIONS: dict[str, Callable[[mx.array], mx.array]] = {
    "silu": nn.silu,
    "relu": nn.relu,
    "tanh": tanh,
    "gelu": nn.gelu,  # the exact, erf-based GELU
    "lecun_tanh": lecun_tanh,
}


def get_activation(name: str) -> Callable[[mx.array], mx.array]:
    """The backbone activation called ``name``."""
    if name not in ACTIVATIONS:
        raise ModelError(
            f"unknown activation {name!r}; valid options are {sorted(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ModelError(f"unknown mode {mode!r}; valid options are {list(MODES)}")
    return mode


class Backbone(nn.Module):
    """``backbone_layers`` of ``Linear → activation → Dropout``.

    Dropout follows *every* layer, the first one included (the reference
    skips it after the first layer, so its default one-layer backbone never
    drops anything).

    Args:
        in_features (int): Input size.
        units (int): Width of every layer.
        layers (int): Number of layers, at least 1.
        activation (str): One of :data:`ACTIVATIONS`.
        dropout (float): Drop probability after each layer. Default: ``0.0``.
    """

    def __init__(
        self,
        in_features: int,
        units: int,
        layers: int,
        activation: str,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.layers = [
            nn.Linear(in_features if i == 0 else units, units) for i in range(layers)
        ]
        self.dropout = nn.Dropout(dropout)

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = self.dropout(self.activation(layer(x)))
        return x


# -- the gated heads ------------------------------------------------------------
#
# ``h' = f_1 (1 − g) + g f_2`` (or ``f_1 + g f_2``) from ``z = [z_1 z_2 z_a z_b]``
# with f_i = tanh(z_i) = 2σ(2 z_i) − 1 and g = σ(z_a t + z_b): one logistic
# evaluation of ``[2 z_1, 2 z_2, z_a t + z_b]`` gives all three, and is kept
# for the gradient, which is written out so that ``dz`` is one concatenation
# (MLX's gradient of four slices of ``z`` is four full-size scatters and
# their sum). Slices, not ``mx.split``: split's sibling outputs inside a
# custom function break mx.compile in MLX 0.32 (IndexError: _Map_base::at).


def _quarters(z: mx.array) -> list[mx.array]:
    h = z.shape[-1] // 4
    return [z[..., i * h : (i + 1) * h] for i in range(4)]


def _thirds(s: mx.array) -> list[mx.array]:
    h = s.shape[-1] // 3
    return [s[..., i * h : (i + 1) * h] for i in range(3)]


def _head_activations(z: mx.array, ts: Any) -> tuple[mx.array, mx.array]:
    """``(h', s)`` with ``s = σ([2 z_1, 2 z_2, z_a t + z_b])``."""
    z1, z2, z_a, z_b = _quarters(z)
    s = sigmoid_values(mx.concatenate([z1 * 2.0, z2 * 2.0, z_a * ts + z_b], axis=-1))
    return s, z_a


def _combine(s: mx.array, gated: bool) -> mx.array:
    s1, s2, gate = _thirds(s)
    ff1, ff2 = s1 * 2.0 - 1.0, s2 * 2.0 - 1.0
    if gated:
        return ff1 * (1.0 - gate) + gate * ff2
    return ff1 + gate * ff2


def _heads_grad(
    s: mx.array, z_a: mx.array | None, ts: Any, cotangent: mx.array, gated: bool
) -> tuple[mx.array, mx.array | None]:
    """``(dz, dt)`` of the heads from the kept activations ``s``."""
    s1, s2, gate = _thirds(s)
    ff1, ff2 = s1 * 2.0 - 1.0, s2 * 2.0 - 1.0
    d_ff1 = cotangent * (1.0 - gate) if gated else cotangent
    d_gate = cotangent * (ff2 - ff1) if gated else cotangent * ff2
    d_pre = d_gate * (gate * (1.0 - gate))
    dz = mx.concatenate(
        [
            d_ff1 * (1.0 - ff1 * ff1),
            (cotangent * gate) * (1.0 - ff2 * ff2),
            d_pre * ts,
            d_pre,
        ],
        axis=-1,
    )
    if not isinstance(ts, mx.array) or z_a is None:
        return dz, None
    d_ts = d_pre * z_a
    while d_ts.ndim > ts.ndim:
        d_ts = d_ts.sum(axis=0)
    axes = [a for a, n in enumerate(ts.shape) if n == 1 and d_ts.shape[a] != 1]
    return dz, (mx.sum(d_ts, axis=axes, keepdims=True) if axes else d_ts)


def _make_heads(gated: bool, constant_ts: float | None) -> Any:
    """The heads as a custom function of ``z`` (and ``t``, unless constant)."""
    if constant_ts is None:

        @mx.custom_function
        def heads(z: mx.array, ts: mx.array) -> tuple[mx.array, mx.array]:
            s, _ = _head_activations(z, ts)
            return _combine(s, gated), s

        @heads.vjp
        def heads_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
            z, ts = primals
            return _heads_grad(outputs[1], _quarters(z)[2], ts, cotangents[0], gated)

        return heads

    @mx.custom_function
    def constant_heads(z: mx.array) -> tuple[mx.array, mx.array]:
        s, _ = _head_activations(z, constant_ts)
        return _combine(s, gated), s

    @constant_heads.vjp
    def constant_heads_vjp(primals: Any, cotangents: Any, outputs: Any) -> Any:
        return _heads_grad(outputs[1], None, constant_ts, cotangents[0], gated)[0]

    return constant_heads


_HEADS: dict[tuple[bool, float | None], Any] = {}


def gated_heads(z: mx.array, ts: float | mx.array, gated: bool) -> mx.array:
    """The default (``gated``) or no-gate CfC heads of ``z`` ``(..., 4H)``."""
    constant = None if isinstance(ts, mx.array) else float(ts)
    key = (gated, constant)
    if key not in _HEADS:
        _HEADS[key] = _make_heads(gated, constant)
    if constant is None:
        return _HEADS[key](z, ts)[0]
    return _HEADS[key](z)[0]


def _xavier(linear: nn.Linear) -> None:
    linear.weight = nn.init.glorot_uniform()(linear.weight, 1.0)


class CfCCell(nn.Module):
    r"""A Closed-form Continuous-time cell with ``H`` hidden units.

    With ``z = backbone([x, h])`` (or ``[x, h]`` without a backbone) and the
    elapsed time ``t``:

    .. math::

        f_1 = \tanh(W_1 z + b_1), \quad f_2 = \tanh(W_2 z + b_2), \quad
        g = \sigma\big((W_a z + b_a)\,t + W_b z + b_b\big)

    ``default``: ``h' = f_1 (1 - g) + g f_2``; ``no_gate``: ``h' = f_1 + g f_2``;
    ``pure``: ``h' = -A e^{-t(|w_τ| + |W_1 z + b_1|)} (W_1 z + b_1) + A``.

    These are the numerics of the PyTorch reference (``tanh`` heads, gate
    ``σ(t_a t + t_b)``). ``W_1, W_2`` are multiplied by the sparsity mask and
    the synapse gains, which are constants, not parameters.

    Args:
        input_size (int): ``I``.
        hidden_size (int): ``H``.
        mode (str): ``"default"``, ``"pure"`` or ``"no_gate"``. Default:
            ``"default"``.
        backbone_activation (str): ``silu``, ``relu``, ``tanh``, ``gelu`` or
            ``lecun_tanh``. Default: ``"lecun_tanh"``.
        backbone_units (int): Backbone width. Default: ``128``.
        backbone_layers (int): Backbone depth; ``0`` for none. Default: ``1``.
        backbone_dropout (float): Dropout after every backbone layer.
            Default: ``0.0``.
        sparsity_mask (array, optional): ``(I + H, H)`` polarities (source
            row, target column) whose nonzero entries keep a weight of
            ``W_1, W_2``; needs ``backbone_layers=0``. Default: ``None``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        mode: str = "default",
        backbone_activation: str = "lecun_tanh",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_dropout: float = 0.0,
        sparsity_mask: Any = None,
    ) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.mode = check_mode(mode)
        get_activation(backbone_activation)
        backbone_layers = check_size("backbone_layers", backbone_layers, minimum=0)
        if backbone_layers > 0:
            backbone_units = check_size("backbone_units", backbone_units)
        if not 0.0 <= float(backbone_dropout) < 1.0:
            raise ModelError(
                f"backbone_dropout must be in [0, 1), got {backbone_dropout!r}"
            )
        if sparsity_mask is not None and backbone_layers > 0:
            raise ModelError(
                f"a sparsity_mask needs backbone_layers=0 (got {backbone_layers}): "
                "the mask acts on the [input, state] → hidden weights"
            )
        self.backbone_activation = backbone_activation
        self.backbone_layers = backbone_layers
        self.backbone_units = backbone_units if backbone_layers > 0 else 0

        features = self.input_size + self.hidden_size
        if backbone_layers > 0:
            self.backbone = Backbone(
                features,
                backbone_units,
                backbone_layers,
                backbone_activation,
                float(backbone_dropout),
            )
            features = backbone_units
        self.ff1 = nn.Linear(features, self.hidden_size)
        heads = [self.ff1]
        if self.mode == "pure":
            self.w_tau = mx.zeros((1, self.hidden_size))
            self.A = mx.ones((1, self.hidden_size))
        else:
            self.ff2 = nn.Linear(features, self.hidden_size)
            self.time_a = nn.Linear(features, self.hidden_size)
            self.time_b = nn.Linear(features, self.hidden_size)
            heads += [self.ff2, self.time_a, self.time_b]
        for linear in [*heads, *(self.backbone.layers if backbone_layers else [])]:
            _xavier(linear)

        if sparsity_mask is not None:
            mask = check_matrix(
                "sparsity_mask",
                sparsity_mask,
                (self.input_size + self.hidden_size, self.hidden_size),
            )
            self._sparsity_mask = mx.array(np.ascontiguousarray(np.abs(mask).T))
            self._synapse_gains = mx.ones(self._sparsity_mask.shape)

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    def output_size(self) -> int:
        return self.hidden_size

    # -- the pieces of a step, shared with the sequence modules -------------

    def _prepare(self) -> dict[str, Any]:
        """The weights of the step, masked and split ``[input | state]``.

        The first matrix that sees ``[x, h]`` (the first backbone layer, or
        the heads stacked as ``[W_1; W_2; W_a; W_b]`` without a backbone) is
        split by columns so the input part can be applied to all time steps
        at once.
        """
        heads = (
            [self.ff1]
            if self.mode == "pure"
            else [self.ff1, self.ff2, self.time_a, self.time_b]
        )
        weights = [head.weight for head in heads]
        if "_sparsity_mask" in self:
            scale = self._sparsity_mask * self._synapse_gains
            weights[0] = weights[0] * scale
            if len(weights) > 1:
                weights[1] = weights[1] * scale
        head_w = mx.concatenate(weights, axis=0) if len(weights) > 1 else weights[0]
        head_b = mx.concatenate([head.bias for head in heads], axis=0)
        if self.backbone_layers:
            first = self.backbone.layers[0]
            first_w, first_b = first.weight, first.bias
        else:
            first_w, first_b = head_w, head_b
        # contiguous: a column slice of the weights would otherwise be copied
        # again by every matmul of every step
        return {
            "w_x": mx.contiguous(first_w[:, : self.input_size].T),
            "w_h": mx.contiguous(first_w[:, self.input_size :].T),
            "b": first_b,
            "head_w": head_w.T,
            "head_b": head_b,
        }

    def _project(self, prepared: dict[str, Any], x: mx.array) -> mx.array:
        """The input's share of the first layer, ``x W_x + b``, for ``(..., I)``."""
        return x @ prepared["w_x"] + prepared["b"]

    def _step(
        self,
        prepared: dict[str, Any],
        projected: mx.array,
        h: mx.array,
        ts: float | mx.array,
    ) -> mx.array:
        """The new state from the projected input ``(B, ·)`` and ``h`` ``(B, H)``."""
        z = projected + h @ prepared["w_h"]
        if self.backbone_layers:
            backbone = self.backbone
            z = backbone.dropout(backbone.activation(z))
            for layer in backbone.layers[1:]:
                z = backbone.dropout(backbone.activation(layer(z)))
            z = z @ prepared["head_w"] + prepared["head_b"]
        return self._heads(z, ts)

    def _heads(self, z: mx.array, ts: float | mx.array) -> mx.array:
        if self.mode == "pure":
            decay = mx.exp(-ts * (mx.abs(self.w_tau) + mx.abs(z)))
            return -self.A * decay * z + self.A
        return gated_heads(z, ts, self.mode == "default")

    def __call__(
        self,
        inputs: mx.array,
        state: mx.array,
        ts: Any = 1.0,
    ) -> tuple[mx.array, mx.array]:
        """One step: ``(B, I)`` inputs, ``(B, H)`` state → ``(h', h')``.

        ``ts`` is the elapsed time: a number or a ``(B,)``/``(B, 1)`` array.
        """
        inputs = as_float_array(inputs, "inputs")
        state = as_float_array(state, "state")
        check_step_shapes("CfCCell", inputs, state, self.input_size, self.hidden_size)
        ts = elapsed_column(ts, inputs.shape[0])
        prepared = self._prepare()
        h = self._step(prepared, self._project(prepared, inputs), state, ts)
        return h, h
