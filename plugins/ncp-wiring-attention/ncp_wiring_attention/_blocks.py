"""Argument checks and the head-by-head fan-in builder shared by both wirings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ncp_core.errors import WiringError


def check_size(wiring: str, name: str, value: Any) -> int:
    """``value`` as a positive int, or a WiringError naming the wiring."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WiringError(
            f"wiring {wiring!r}: {name} must be a positive integer, got {value!r}"
        )
    if value < 1:
        raise WiringError(
            f"wiring {wiring!r}: {name} must be at least 1, got {value!r}"
        )
    return int(value)


def check_density(wiring: str, name: str, value: Any) -> float:
    """``value`` as a float in ``(0, 1]``: a density of 0 would cut paths."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not 0.0 < value <= 1.0
    ):
        raise WiringError(
            f"wiring {wiring!r}: {name} must be a number in (0, 1], got {value!r}; "
            "it is the fraction of the source group each neuron receives from"
        )
    return float(value)


def check_fraction(wiring: str, name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not 0.0 <= value <= 1.0
    ):
        raise WiringError(
            f"wiring {wiring!r}: {name} must be a number in [0, 1], got {value!r}"
        )
    return float(value)


def check_heads(wiring: str, name: str, size: int, num_heads: int) -> int:
    """The head size ``size / num_heads``; an error if it does not divide."""
    if size % num_heads:
        lower = max(num_heads, size - size % num_heads)
        raise WiringError(
            f"wiring {wiring!r}: {name} {size} is not divisible by num_heads "
            f"{num_heads}; use a multiple of {num_heads} (e.g. {lower} or "
            f"{lower + num_heads}) or a num_heads that divides {size}"
        )
    return size // num_heads


def fanin_of(density: float, population: int) -> int:
    """Sources per target for a density: at least one, so no target is cut off."""
    return max(1, min(population, round(density * population)))


def blockwise_fanin(
    rng: np.random.Generator,
    sources: np.ndarray,
    targets: np.ndarray,
    fanin: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Synapse pairs giving each target ``fanin`` distinct sources of its block.

    ``sources`` is ``(B, S)`` ids and ``targets`` ``(B, T)`` ids: the targets of
    block ``b`` draw only from the sources of block ``b``, so blocks (heads)
    never mix. Returns flat ``(sources, targets)`` of ``B·T·fanin`` synapses.
    """
    blocks, population = sources.shape
    width = targets.shape[1]
    if fanin >= population:
        chosen = np.broadcast_to(sources[:, None, :], (blocks, width, population))
    else:
        keys = rng.random((blocks, width, population), dtype=np.float32)
        picks = np.argpartition(keys, fanin - 1, axis=2)[..., :fanin]
        chosen = np.take_along_axis(
            np.broadcast_to(sources[:, None, :], keys.shape), picks, axis=2
        )
    receivers = np.broadcast_to(targets[:, :, None], chosen.shape)
    return chosen.reshape(-1), receivers.reshape(-1)
