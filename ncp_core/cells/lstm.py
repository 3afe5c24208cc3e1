"""The LSTM that gives LTC and CfC models a mixed memory."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ncp_core.cells._checks import check_size
from ncp_core.cells.synapses import sigmoid, tanh

__all__ = ["LSTMCell"]


def _orthogonal(shape: tuple[int, int]) -> mx.array:
    """A random ``(rows, cols)`` matrix with orthonormal columns (or rows)."""
    rows, cols = shape
    tall = rows >= cols
    normal = mx.random.normal((rows, cols) if tall else (cols, rows))
    q, r = mx.linalg.qr(normal, stream=mx.cpu)
    q = q * mx.sign(mx.diagonal(r))
    return q if tall else q.T


class LSTMCell(nn.Module):
    r"""An LSTM cell whose forget gate starts open (bias ``+1``).

    .. math::

        [z_i, z_{ig}, z_{fg}, z_{og}] = W_x x + b + W_h h \\
        c' = c\,\sigma(z_{fg} + 1) + \tanh(z_i)\,\sigma(z_{ig}), \qquad
        h' = \tanh(c')\,\sigma(z_{og})

    Args:
        input_size (int): ``I``.
        hidden_size (int): ``H``.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.input_map.weight = nn.init.glorot_uniform()(self.input_map.weight, 1.0)
        self.input_map.bias = mx.random.uniform(-0.1, 0.1, (4 * hidden_size,))
        self.recurrent_map.weight = _orthogonal((4 * hidden_size, hidden_size))

    def _step(
        self, projected: mx.array, h: mx.array, c: mx.array
    ) -> tuple[mx.array, mx.array]:
        """One step from the projected input ``W_x x + b`` of shape ``(B, 4H)``."""
        z = projected + self.recurrent_map(h)
        i, ig, fg, og = mx.split(z, 4, axis=-1)
        c = c * sigmoid(fg + 1.0) + tanh(i) * sigmoid(ig)
        h = tanh(c) * sigmoid(og)
        return h, c

    def __call__(
        self, inputs: mx.array, state: tuple[mx.array, mx.array]
    ) -> tuple[mx.array, mx.array]:
        """``(B, I)`` inputs and ``(h, c)`` → the new ``(h, c)``."""
        h, c = state
        return self._step(self.input_map(inputs), h, c)
