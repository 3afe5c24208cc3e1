"""A ring wiring for ncp: each neuron excites the next ones around a ring."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ncp_core import Wiring, hookimpl
from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY

__all__ = ["Ring"]


class Ring(Wiring):
    """Neurons on a ring, each exciting the next ``reach`` neurons.

    Neuron ``i`` synapses onto ``(i + k) mod N`` for ``k = 1 .. reach``, all
    excitatory. Each input feature reaches ``sensory_fanout`` random neurons
    with a random polarity. The first ``output_dim`` neurons are the group
    ``motor``, the others the group ``inter``.

    Args:
        units (int): Neurons on the ring ``N``.
        output_dim (int): Output neurons. Default: ``1``.
        reach (int): Neighbours each neuron excites, ``1 <= reach < N``.
            Default: ``1``.
        sensory_fanout (int): Neurons each input feature reaches.
            Default: ``2``.
        seed (int): Seed of the sensory draw. Default: ``0``.
    """

    name = "ring"

    def __init__(
        self,
        units: int,
        output_dim: int = 1,
        reach: int = 1,
        sensory_fanout: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(units, output_dim, seed=seed)
        if not 1 <= reach < self.units:
            raise WiringError(
                f"reach {reach!r} must be in [1, {self.units - 1}] for a ring "
                f"of {self.units} neurons"
            )
        if not 1 <= sensory_fanout <= self.units:
            raise WiringError(
                f"sensory_fanout {sensory_fanout!r} must be in [1, {self.units}]"
            )
        self.reach = reach
        self.sensory_fanout = sensory_fanout

        neurons = np.arange(self.units)
        self.add_group("motor", neurons[: self.output_dim])
        if self.output_dim < self.units:
            self.add_group("inter", neurons[self.output_dim :])
        self.set_layers([neurons])
        for step in range(1, reach + 1):
            self.connect_one_to_one(neurons, np.roll(neurons, -step), polarity=1)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        everyone = np.arange(self.units)
        self.connect_fanout(SENSORY, everyone, self.sensory_fanout, rng=rng)


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    register(Ring)
