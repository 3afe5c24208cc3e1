"""The input side of the language wiring: token ids to sensory features."""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ncp_core.errors import WiringError

__all__ = ["TokenEncoder", "sinusoidal_positions"]


def sinusoidal_positions(max_length: int, dims: int) -> mx.array:
    """The ``(max_length, dims)`` sinusoidal position code of the Transformer.

    ``P[t, 2i] = sin(t / 10000^(2i/D))`` and ``P[t, 2i+1] = cos(t /
    10000^(2i/D))``; an odd ``D`` drops the last cosine.
    """
    positions = np.arange(max_length, dtype=np.float64)[:, None]
    rates = np.exp(-math.log(10000.0) * np.arange(0, dims, 2) / dims)
    angles = positions * rates
    table = np.empty((max_length, 2 * rates.size), dtype=np.float32)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return mx.array(table[:, :dims])


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise WiringError(
            f"TokenEncoder: {name} must be a positive integer, got {value!r}"
        )
    return int(value)


class TokenEncoder(nn.Module):
    """Token ids to sensory features: an embedding plus a position code.

    Shapes: tokens ``(B, L)`` (or ``(L,)``) of integers in ``[0, V)`` become
    features ``(B, L, D)`` (or ``(L, D)``), ``L <= max_length``, ready for an
    LTC or CfC over the ``language`` wiring with ``embed_dim = D``.

    .. math::

        x_t = E[\\text{token}_t] + P_t

    ``E`` is a trainable ``(V, D)`` embedding; ``P`` the fixed sinusoidal code
    of :func:`sinusoidal_positions`, or a trainable ``(max_length, D)`` table
    (initialised at zero) with ``learned_positions``.

    Args:
        vocab_size (int): Number of token ids ``V``.
        embed_dim (int): Features per token ``D``.
        max_length (int): Longest sequence accepted.
        learned_positions (bool): Learn the position code. Default: ``False``.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        max_length: int,
        learned_positions: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size = _check_size("vocab_size", vocab_size)
        self.embed_dim = _check_size("embed_dim", embed_dim)
        self.max_length = _check_size("max_length", max_length)
        self.learned_positions = bool(learned_positions)
        self.embedding = nn.Embedding(self.vocab_size, self.embed_dim)
        if self.learned_positions:
            self.positions = mx.zeros((self.max_length, self.embed_dim))
        else:
            # a leading underscore keeps the fixed code out of the parameters
            self._positions = sinusoidal_positions(self.max_length, self.embed_dim)

    def _extra_repr(self) -> str:
        return (
            f"vocab_size={self.vocab_size}, embed_dim={self.embed_dim}, "
            f"max_length={self.max_length}, "
            f"learned_positions={self.learned_positions}"
        )

    def __call__(self, tokens: mx.array) -> mx.array:
        if tokens.ndim not in (1, 2):
            raise WiringError(
                f"TokenEncoder expects token ids of shape (B, L) or (L,), got "
                f"shape {tuple(tokens.shape)}"
            )
        if not mx.issubdtype(tokens.dtype, mx.integer):
            raise WiringError(
                f"TokenEncoder expects integer token ids, got dtype {tokens.dtype}; "
                "convert with tokens.astype(mx.int32)"
            )
        length = tokens.shape[-1]
        if length > self.max_length:
            raise WiringError(
                f"TokenEncoder got a sequence of {length} tokens but max_length is "
                f"{self.max_length}; create it with max_length >= {length} or cut "
                "the sequence"
            )
        # XXX: ids outside [0, vocab_size) are not checked: that needs a device
        # sync on every call and would break mx.compile.
        positions = self.positions if self.learned_positions else self._positions
        return self.embedding(tokens) + positions[:length]
