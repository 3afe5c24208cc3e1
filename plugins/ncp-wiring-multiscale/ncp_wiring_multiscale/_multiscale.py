"""Fast, medium and slow neuron groups on separate time scales."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["MultiScale", "fanin_for"]


def fanin_for(density: float, size: int) -> int:
    """Sources per target for a ``density`` over a group of ``size``: 0 or ≥ 1."""
    if density == 0.0:
        return 0
    return max(1, round(density * size))


def check_time_scales(value: Sequence[float], count: int, names: str) -> list[float]:
    """``count`` positive, finite time scales in non-decreasing order."""
    try:
        scales = [float(v) for v in value]
    except (TypeError, ValueError):
        scales = []
    if len(scales) != count or not all(np.isfinite(scales)) or min(scales) <= 0:
        raise WiringError(
            f"time_scales must be {count} positive numbers ({names}), got {value!r}"
        )
    if any(a > b for a, b in pairwise(scales)):
        raise WiringError(
            f"time_scales {value!r} must not decrease ({names}): a slower group "
            "has a time scale at least as long as a faster one"
        )
    return scales


class MultiScale(Wiring):
    """Fast, medium and slow recurrent groups that modulate one another.

    Neuron ids: motor ``[0, M)``, fast ``[M, M + F)``, medium next, slow last.
    With ``fanin(d, n) = max(1, round(d n))`` sources per target neuron (none
    when ``d = 0``), every polarity excitatory with probability
    ``excitatory``:

    - inputs → fast, medium and slow: ``fanin(sensory_density, S)`` input
      features per neuron, so each path starts at the inputs;
    - fast → fast, medium → medium, slow → slow (recurrence within each
      group): ``fanin(recurrent_density, |group|)``;
    - fast → medium → slow (faster groups summarised by slower ones):
      ``fanin(ascending_density, |source|)``;
    - slow → medium → fast, and slow → fast when ``slow_to_fast`` (slower
      groups modulate faster ones): ``fanin(modulation_density, |source|)``;
    - fast → motor (the fast path answers at once):
      ``fanin(output_density, F)``.

    Medium and slow neurons reach the outputs only through the fast group.
    Time scales ``τ = (τ_fast, τ_medium, τ_slow)``: motor and fast neurons
    take ``τ_fast``; a neuron of time scale ``τ`` integrates ``dt / τ``.
    Layers, for the wired CfC: ``[fast ∪ medium ∪ slow, motor]``.

    Args:
        fast_neurons (int): Size ``F`` of the fast group.
        medium_neurons (int): Size of the medium group.
        slow_neurons (int): Size of the slow group.
        output_neurons (int): Motor neurons ``M``, the outputs.
        time_scales (list[float]): ``τ`` of fast, medium and slow neurons,
            non-decreasing. Default: ``[1.0, 4.0, 16.0]``.
        sensory_density (float): Fraction of the input features each neuron
            reads, in ``(0, 1]``. Default: ``0.5``.
        recurrent_density (float): Within-group fan-in fraction.
            Default: ``0.3``.
        ascending_density (float): Fast → medium → slow fan-in fraction.
            Default: ``0.2``.
        modulation_density (float): Slow → medium → fast fan-in fraction.
            Default: ``0.3``.
        output_density (float): Fast → motor fan-in fraction, in ``(0, 1]``.
            Default: ``0.5``.
        slow_to_fast (bool): Whether slow neurons also modulate fast ones
            directly. Default: ``True``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed. Default: ``0``.
    """

    name = "multiscale"

    def __init__(
        self,
        fast_neurons: int,
        medium_neurons: int,
        slow_neurons: int,
        output_neurons: int,
        time_scales: Sequence[float] = (1.0, 4.0, 16.0),
        sensory_density: float = 0.5,
        recurrent_density: float = 0.3,
        ascending_density: float = 0.2,
        modulation_density: float = 0.3,
        output_density: float = 0.5,
        slow_to_fast: bool = True,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        fast = _check_size("fast_neurons", fast_neurons)
        medium = _check_size("medium_neurons", medium_neurons)
        slow = _check_size("slow_neurons", slow_neurons)
        motor = _check_size("output_neurons", output_neurons)
        scales = check_time_scales(time_scales, 3, "fast, medium, slow")
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        self.recurrent_density = _check_fraction("recurrent_density", recurrent_density)
        self.ascending_density = _check_fraction("ascending_density", ascending_density)
        self.modulation_density = _check_fraction(
            "modulation_density", modulation_density
        )
        self.output_density = _check_fraction("output_density", output_density)
        self.excitatory = _check_fraction("excitatory", excitatory)
        if self.sensory_density == 0.0:
            raise WiringError(
                "sensory_density 0 leaves every neuron without input; use a "
                "value in (0, 1]"
            )
        if self.output_density == 0.0:
            raise WiringError(
                f"output_density 0 leaves the output neurons 0..{motor - 1} with "
                "no path from the inputs; use a value in (0, 1]"
            )
        super().__init__(motor + fast + medium + slow, motor, seed=seed)
        self.slow_to_fast = bool(slow_to_fast)

        start = np.cumsum([0, motor, fast, medium, slow])
        self.add_group("motor", range(start[0], start[1]))
        self.add_group("fast", range(start[1], start[2]))
        self.add_group("medium", range(start[2], start[3]))
        self.add_group("slow", range(start[3], start[4]))
        self.set_layers([np.arange(start[1], start[4]), "motor"])
        self.set_time_scales(
            np.repeat([scales[0], scales[0], scales[1], scales[2]], np.diff(start))
        )

        for group in ("fast", "medium", "slow"):
            self._connect_groups(group, group, self.recurrent_density)
        self._connect_groups("fast", "medium", self.ascending_density)
        self._connect_groups("medium", "slow", self.ascending_density)
        self._connect_groups("slow", "medium", self.modulation_density)
        self._connect_groups("medium", "fast", self.modulation_density)
        if self.slow_to_fast:
            self._connect_groups("slow", "fast", self.modulation_density)
        self._connect_groups("fast", "motor", self.output_density)

    def _connect_groups(self, source: str, target: str, density: float) -> None:
        fanin = fanin_for(density, self.groups[source].size)
        self.connect_fanin(source, target, fanin, self.excitatory)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        fanin = fanin_for(self.sensory_density, self.input_dim)
        for group in ("fast", "medium", "slow"):
            self.connect_fanin(SENSORY, group, fanin, self.excitatory, rng=rng)
