"""Stacked layers with feed-forward, skip and feedback connections."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size
from ncp_wiring_multiscale._multiscale import fanin_for

__all__ = ["Hierarchical"]


class Hierarchical(Wiring):
    """Layers of neurons, each feeding the next; the last layer is the output.

    For layers ``0 .. L-1`` in feed-forward order, neuron ids run backwards,
    as in an NCP: layer ``L-1`` (the outputs) holds ids ``[0, k_{L-1})``,
    layer ``L-2`` the next ids, and layer ``0`` the last ones. With
    ``fanin(d, n) = max(1, round(d n))`` sources per target neuron, every
    polarity excitatory with probability ``excitatory``:

    - inputs → layer ``0``: ``fanin(sensory_density, S)`` features per neuron;
    - layer ``i`` → layer ``i+1`` (feed-forward):
      ``fanin(forward_density, k_i)``;
    - layer ``i`` → layer ``i+2`` when ``skip_connections`` (a skip spans
      exactly one layer): ``fanin(skip_density, k_i)``;
    - layer ``i+1`` → layer ``i`` when ``feedback``:
      ``fanin(feedback_density, k_{i+1})``.

    There are no synapses within a layer. ``layers`` is set in feed-forward
    order, so the wired CfC chains the same layers; it uses only the
    synapses from each layer to the next (skip and feedback synapses act in
    the LTC cell, which reads the whole adjacency).

    Args:
        layer_sizes (list[int]): Neurons per layer, input side first; the
            last entry is the number of outputs.
        skip_connections (bool): Add layer ``i`` → ``i+2`` synapses.
            Default: ``True``.
        feedback (bool): Add layer ``i+1`` → ``i`` synapses. Default: ``True``.
        sensory_density (float): Fraction of the input features each
            first-layer neuron reads, in ``(0, 1]``. Default: ``0.5``.
        forward_density (float): Feed-forward fan-in fraction, in ``(0, 1]``.
            Default: ``0.5``.
        skip_density (float): Skip fan-in fraction. Default: ``0.25``.
        feedback_density (float): Feedback fan-in fraction. Default: ``0.25``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed. Default: ``0``.
    """

    name = "hierarchical"

    def __init__(
        self,
        layer_sizes: Sequence[int],
        skip_connections: bool = True,
        feedback: bool = True,
        sensory_density: float = 0.5,
        forward_density: float = 0.5,
        skip_density: float = 0.25,
        feedback_density: float = 0.25,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        if isinstance(layer_sizes, (str, bytes)) or not isinstance(
            layer_sizes, Sequence
        ):
            raise WiringError(
                f"layer_sizes must be a list of layer sizes, got {layer_sizes!r}"
            )
        if len(layer_sizes) == 0:
            raise WiringError(
                "layer_sizes is empty: give at least one layer, e.g. [16, 8, 2]"
            )
        sizes = [_check_size(f"layer_sizes[{i}]", n) for i, n in enumerate(layer_sizes)]
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        self.forward_density = _check_fraction("forward_density", forward_density)
        self.skip_density = _check_fraction("skip_density", skip_density)
        self.feedback_density = _check_fraction("feedback_density", feedback_density)
        self.excitatory = _check_fraction("excitatory", excitatory)
        if self.sensory_density == 0.0:
            raise WiringError(
                "sensory_density 0 leaves the first layer without input; use a "
                "value in (0, 1]"
            )
        if self.forward_density == 0.0 and len(sizes) > 1:
            raise WiringError(
                f"forward_density 0 leaves the output neurons 0..{sizes[-1] - 1} "
                "(the last layer) with no path from the inputs; use a value in "
                "(0, 1]"
            )
        super().__init__(sum(sizes), sizes[-1], seed=seed)
        self.layer_sizes = sizes
        self.skip_connections = bool(skip_connections)
        self.feedback = bool(feedback)

        starts = np.cumsum([0, *reversed(sizes)])
        depth = len(sizes)
        for k in range(depth):
            layer = depth - 1 - k
            self.add_group(f"layer_{layer}", range(starts[k], starts[k + 1]))
        self.set_layers([f"layer_{i}" for i in range(depth)])

        for i in range(depth - 1):
            self._connect_layers(i, i + 1, self.forward_density)
        if self.skip_connections:
            for i in range(depth - 2):
                self._connect_layers(i, i + 2, self.skip_density)
        if self.feedback:
            for i in range(depth - 1):
                self._connect_layers(i + 1, i, self.feedback_density)

    def _connect_layers(self, source: int, target: int, density: float) -> None:
        fanin = fanin_for(density, self.layer_sizes[source])
        self.connect_fanin(f"layer_{source}", f"layer_{target}", fanin, self.excitatory)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        fanin = fanin_for(self.sensory_density, self.input_dim)
        self.connect_fanin(SENSORY, "layer_0", fanin, self.excitatory, rng=rng)
