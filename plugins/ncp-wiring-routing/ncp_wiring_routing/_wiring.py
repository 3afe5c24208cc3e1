"""The dynamic-routing wiring: capsules of neurons, primary to output."""

from __future__ import annotations

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["DynamicRouting"]


class DynamicRouting(Wiring):
    r"""Capsules of neurons, primary to output, routed by agreement at run time.

    ``I = num_capsules`` primary capsules of ``D = capsule_dim`` neurons and
    ``J = output_capsules`` output capsules of ``E = output_capsule_dim``
    neurons. Neuron ids: output capsule ``j`` is ``[jE, (j+1)E)`` (the
    outputs are the first ``M = J·E`` ids), then primary capsule ``i`` is
    ``[M + iD, M + (i+1)D)``. Synapses:

    - inputs → every primary neuron, ``max(1, round(sensory_density · S))``
      input features each;
    - primary capsule ``i`` → output capsule ``j``: every neuron of ``i`` to
      every neuron of ``j``, for every ``(i, j)``;
    - with ``capsule_recurrence``, every neuron of a capsule to every other
      neuron of the same capsule (no self-synapses), primary and output.

    Layers ``[primary, output]``. Every polarity is excitatory with
    probability ``excitatory``. The routing itself happens at run time:
    :class:`ncp_wiring_routing.CapsuleRouting` scales the synapses from
    capsule ``i`` to capsule ``j`` by ``J · c_ij``, coupling coefficients
    found by ``routing_iterations`` rounds of routing by agreement at every
    step.

    Args:
        num_capsules (int): ``I``, primary capsules.
        capsule_dim (int): ``D``, neurons per primary capsule.
        output_capsules (int): ``J``. Default: ``2``.
        output_capsule_dim (int, optional): ``E``. Default: ``capsule_dim``.
        routing_iterations (int): Rounds of routing per step (``0``: uniform
            coupling). Default: ``3``.
        capsule_recurrence (bool): Dense recurrence within each capsule.
            Default: ``True``.
        sensory_density (float): Share of input features per primary neuron,
            in ``(0, 1]``. Default: ``1.0``.
        excitatory (float): Probability of an excitatory synapse. Default:
            ``0.5``.
        seed (int): Seed of the draws. Default: ``0``.
    """

    name = "dynamic_routing"

    def __init__(
        self,
        num_capsules: int,
        capsule_dim: int,
        output_capsules: int = 2,
        output_capsule_dim: int | None = None,
        routing_iterations: int = 3,
        capsule_recurrence: bool = True,
        sensory_density: float = 1.0,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        num_capsules = _check_size("num_capsules", num_capsules)
        capsule_dim = _check_size("capsule_dim", capsule_dim)
        output_capsules = _check_size("output_capsules", output_capsules)
        output_capsule_dim = _check_size(
            "output_capsule_dim",
            capsule_dim if output_capsule_dim is None else output_capsule_dim,
        )
        self.routing_iterations = _check_size(
            "routing_iterations", routing_iterations, minimum=0
        )
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        if self.sensory_density == 0:
            raise WiringError(
                "sensory_density 0 would leave the primary capsules without "
                "inputs and every output without a path from them; use a "
                "density in (0, 1]"
            )
        self.excitatory = _check_fraction("excitatory", excitatory)
        self.capsule_recurrence = bool(capsule_recurrence)
        outputs = output_capsules * output_capsule_dim
        units = outputs + num_capsules * capsule_dim
        super().__init__(units, outputs, seed=seed)

        self.output_capsule_ids = np.arange(outputs).reshape(
            output_capsules, output_capsule_dim
        )
        self.primary_capsule_ids = np.arange(outputs, units).reshape(
            num_capsules, capsule_dim
        )
        for j, ids in enumerate(self.output_capsule_ids):
            self.add_group(f"output_{j}", ids)
        for i, ids in enumerate(self.primary_capsule_ids):
            self.add_group(f"primary_{i}", ids)
        primary = self.primary_capsule_ids.reshape(-1)
        self.set_layers([primary, np.arange(outputs)])

        self.connect_dense(primary, np.arange(outputs), self.excitatory)
        if self.capsule_recurrence:
            for ids in [*self.primary_capsule_ids, *self.output_capsule_ids]:
                self.connect_dense(ids, ids, self.excitatory, self_connections=False)

    @property
    def num_capsules(self) -> int:
        return int(self.primary_capsule_ids.shape[0])

    @property
    def output_capsules(self) -> int:
        return int(self.output_capsule_ids.shape[0])

    def routed_synapses(self) -> np.ndarray:
        """``(N, N)`` bool: the synapses from primary to output capsules."""
        routed = np.zeros((self.units, self.units), bool)
        routed[
            np.ix_(self.primary_capsule_ids.reshape(-1), np.arange(self.output_dim))
        ] = True
        return routed

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        fanin = max(1, round(self.sensory_density * self.input_dim))
        self.connect_fanin(
            SENSORY,
            self.primary_capsule_ids.reshape(-1),
            fanin,
            self.excitatory,
            rng=rng,
        )
