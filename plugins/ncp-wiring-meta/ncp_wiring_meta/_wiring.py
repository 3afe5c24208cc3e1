"""The meta wiring: a fast group adapted per task, a slow group across tasks."""

from __future__ import annotations

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["Meta"]


class Meta(Wiring):
    r"""Fast neurons adapted to each task, slow neurons learned across tasks.

    ``M = output_neurons`` motor neurons ``[0, M)``, then ``F =
    fast_neurons`` fast neurons, then ``L = slow_neurons`` slow neurons. The
    inputs reach both groups, slow neurons modulate fast ones, fast neurons
    drive the outputs; the slow group never hears from the fast one, so what
    it computes is shared by every task. Each target neuron draws its
    sources without replacement:

    - inputs → fast and → slow: ``max(1, round(sensory_density · S))``;
    - fast → fast: ``round(recurrent_density · F)``;
    - slow → slow: ``round(recurrent_density · L)``;
    - slow → fast (modulation): ``max(1, round(modulation_density · L))``;
    - fast → motor: every fast neuron.

    Layers ``[fast ∪ slow, motor]``: the wired CfC feeds the inputs to both
    groups and, with ``intra_layer="wiring"``, keeps the slow → fast and
    recurrent synapses within that layer (its default ``"dense"`` would
    connect every pair of the layer). Every polarity is excitatory with
    probability ``excitatory``.

    The split is for learning: :class:`ncp_wiring_meta.FirstOrderMAML`
    adapts only the synapses into the fast group in its inner loop and
    everything in its outer loop.

    Args:
        fast_neurons (int): ``F``.
        slow_neurons (int): ``L``.
        output_neurons (int): ``M``. Default: ``1``.
        recurrent_density (float): Within-group fan-in share, ``[0, 1]``.
            Default: ``0.5``.
        modulation_density (float): Slow sources per fast neuron, as a share
            of ``L``, ``(0, 1]``. Default: ``0.5``.
        sensory_density (float): Input features per fast or slow neuron, as a
            share of ``S``, ``(0, 1]``. Default: ``1.0``.
        excitatory (float): Probability of an excitatory synapse. Default:
            ``0.5``.
        seed (int): Seed of the draws. Default: ``0``.
    """

    name = "meta"

    def __init__(
        self,
        fast_neurons: int,
        slow_neurons: int,
        output_neurons: int = 1,
        recurrent_density: float = 0.5,
        modulation_density: float = 0.5,
        sensory_density: float = 1.0,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        fast_neurons = _check_size("fast_neurons", fast_neurons)
        slow_neurons = _check_size("slow_neurons", slow_neurons)
        output_neurons = _check_size("output_neurons", output_neurons)
        self.recurrent_density = _check_fraction("recurrent_density", recurrent_density)
        self.modulation_density = _check_fraction(
            "modulation_density", modulation_density
        )
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        for name, value in (
            ("modulation_density", self.modulation_density),
            ("sensory_density", self.sensory_density),
        ):
            if value == 0:
                raise WiringError(
                    f"{name} 0 would cut the {'slow' if name[0] == 'm' else 'input'} "
                    "signal off from the fast neurons; use a density in (0, 1]"
                )
        self.excitatory = _check_fraction("excitatory", excitatory)
        units = output_neurons + fast_neurons + slow_neurons
        super().__init__(units, output_neurons, seed=seed)

        motor = self.add_group("motor", range(output_neurons))
        fast = self.add_group(
            "fast", range(output_neurons, output_neurons + fast_neurons)
        )
        slow = self.add_group("slow", range(output_neurons + fast_neurons, units))
        self.set_layers([np.concatenate([fast, slow]), motor])

        rule = self.excitatory
        self.connect_fanin(fast, fast, round(self.recurrent_density * fast.size), rule)
        self.connect_fanin(slow, slow, round(self.recurrent_density * slow.size), rule)
        self.connect_fanin(
            slow, fast, max(1, round(self.modulation_density * slow.size)), rule
        )
        self.connect_dense(fast, motor, rule)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        fanin = max(1, round(self.sensory_density * self.input_dim))
        for group in ("fast", "slow"):
            self.connect_fanin(SENSORY, group, fanin, self.excitatory, rng=rng)
