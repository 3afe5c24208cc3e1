"""Argument checks shared by the cells and the sequence modules."""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

from ncp_core.errors import ModelError


def as_float_array(value: Any, what: str) -> mx.array:
    """``value`` as a floating MLX array (float32 unless already floating)."""
    if not isinstance(value, mx.array):
        try:
            value = mx.array(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise ModelError(f"{what} must be an array of numbers: {error}") from None
    if not mx.issubdtype(value.dtype, mx.floating):
        value = value.astype(mx.float32)
    return value


def check_size(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ModelError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ModelError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def check_matrix(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float32 numpy array of exactly ``shape``."""
    array = np.asarray(value, dtype=np.float32)
    if array.shape != shape:
        raise ModelError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ModelError(f"{name} must be finite, got non-finite entries")
    return array


def check_polarity(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A polarity matrix: int8 of ``shape`` with entries -1, 0 or +1."""
    array = np.asarray(value)
    if array.shape != shape:
        raise ModelError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isin(array, (-1, 0, 1))):
        bad = array[~np.isin(array, (-1, 0, 1))].reshape(-1)[0]
        raise ModelError(f"{name} entries must be -1, 0 or +1, got {bad!r}")
    return array.astype(np.int8)


def elapsed_column(elapsed: Any, batch: int) -> float | mx.array:
    """An elapsed time as a Python float or a ``(B, 1)`` array, one per sample."""
    if isinstance(elapsed, (int, float, np.integer, np.floating)) and not isinstance(
        elapsed, bool
    ):
        return float(elapsed)
    array = as_float_array(elapsed, "elapsed_time")
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.shape in ((batch,), (batch, 1)):
        return array.reshape(batch, 1)
    raise ModelError(
        f"elapsed_time must be a number or an array of shape ({batch},) or "
        f"({batch}, 1) for a batch of {batch}, got shape {tuple(array.shape)}"
    )


def check_step_shapes(
    cell: str, inputs: mx.array, state: mx.array, features: int, units: int
) -> None:
    """One-step cell call: ``inputs`` ``(B, S)`` and ``state`` ``(B, N)``."""
    if inputs.ndim != 2 or inputs.shape[1] != features:
        raise ModelError(
            f"{cell} expects inputs of shape (batch, {features}), got "
            f"{tuple(inputs.shape)}"
        )
    if state.shape != (inputs.shape[0], units):
        raise ModelError(
            f"{cell} expects a state of shape ({inputs.shape[0]}, {units}) for "
            f"inputs {tuple(inputs.shape)}, got {tuple(state.shape)}"
        )
