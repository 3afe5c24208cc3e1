"""The adaptive wiring: a fixed number of synapses whose places change."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["Adaptive"]

_OUTPUT_PARAMETERS = ("output_dim", "output_size", "motor_neurons")
"""Names under which wirings take their number of output neurons."""


class Adaptive(Wiring):
    r"""A wiring whose synapses are pruned and regrown while the model trains.

    The starting structure is either the family's own random sparse graph or
    any registered wiring (``base``). :meth:`update_connectivity` then moves
    synapses, keeping their number fixed, in the manner of sparse
    evolutionary training (SET) and RigL: given a score per neuron pair,

    - the ``k = round(fraction · E)`` present synapses with the lowest score
      (the weakest: the score of a present synapse is its weight's
      magnitude) are pruned, and
    - the ``k`` absent synapses with the highest score (the magnitude of the
      loss gradient for switching them on) are grown, each excitatory with
      probability ``excitatory``, inhibitory otherwise.

    ``E`` counts the present synapses with a finite score; pairs scored NaN
    (e.g. pairs a wired CfC does not use) never change. Synapses pruned in an
    update are not regrown by the same update. Sensory synapses do not adapt:
    they are the wiring's interface to the inputs, and keeping them keeps
    every neuron that the starting structure fed from an input fed. So that
    no update cuts an output neuron off from the inputs, each output keeps
    one shortest path from the inputs (through its strongest synapses); the
    synapses on these paths are never pruned.

    Own structure (no ``base``), ``N = units`` neurons, ``M = output_dim``
    motor neurons ``[0, M)`` and ``I = N − M`` inter neurons:

    - each inter neuron gets ``max(1, round(sensory_density · S))`` inputs;
    - each inter neuron gets ``round(density · I)`` inter sources (recurrence);
    - each motor neuron gets ``max(1, round(density · I))`` inter sources;
    - layers ``[inter, motor]`` (for the wired CfC).

    Args:
        units (int, optional): ``N``; required without ``base``. With a
            base, passed on to it if it takes ``units``. Default: ``None``.
        output_dim (int, optional): ``M``. Default: ``1`` (own structure);
            with a base, passed on as its output size.
        density (float): Share of inter sources per neuron, in ``[0, 1]``.
            Default: ``0.3``.
        sensory_density (float): Share of input features per inter neuron,
            in ``[0, 1]``. Default: ``0.5``.
        excitatory (float): Probability that a synapse (drawn here or grown
            later) is excitatory. Default: ``0.5``.
        base (str, optional): A registered wiring to start from. Default:
            ``None``.
        base_params (dict, optional): Its parameters. Default: ``None``.
        seed (int): Seed of the draws. Default: ``0``.
    """

    name = "adaptive"

    def __init__(
        self,
        units: int | None = None,
        output_dim: int | None = None,
        density: float = 0.3,
        sensory_density: float = 0.5,
        excitatory: float = 0.5,
        base: str | None = None,
        base_params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        self.inter_density = _check_fraction("density", density)
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        self.excitatory = _check_fraction("excitatory", excitatory)
        self.updates = 0
        self._base: Wiring | None = None
        if base is None:
            if base_params:
                raise WiringError(
                    f"adaptive: base_params {dict(base_params)!r} given without a "
                    "base; name the wiring to start from with base=..."
                )
            if units is None:
                raise WiringError(
                    "adaptive needs units (its own random structure) or base=NAME "
                    "(start from a registered wiring)"
                )
            self._init_own(units, 1 if output_dim is None else output_dim, seed)
        else:
            self._init_from_base(base, base_params, units, output_dim, seed)

    def _init_own(self, units: int, output_dim: int, seed: int) -> None:
        units = _check_size("units", units)
        output_dim = _check_size("output_dim", output_dim)
        if output_dim >= units:
            raise WiringError(
                f"adaptive needs at least one inter neuron besides the {output_dim} "
                f"output neurons, but units is {units}; use units > output_dim"
            )
        super().__init__(units, output_dim, seed=seed)
        motor = self.add_group("motor", range(output_dim))
        inter = self.add_group("inter", range(output_dim, units))
        self.set_layers(["inter", "motor"])
        self.connect_fanin(
            inter, inter, round(self.inter_density * inter.size), self.excitatory
        )
        self.connect_fanin(
            inter,
            motor,
            max(1, round(self.inter_density * inter.size)),
            self.excitatory,
        )

    def _init_from_base(
        self,
        base: str,
        base_params: Mapping[str, Any] | None,
        units: int | None,
        output_dim: int | None,
        seed: int,
    ) -> None:
        from ncp_core.plugins import get_wiring, wiring_info

        params = dict(base_params or {})
        accepted = set(inspect.signature(wiring_info(base).cls.__init__).parameters)
        if units is not None and "units" in accepted and "units" not in params:
            params["units"] = units
        if output_dim is not None:
            for name in _OUTPUT_PARAMETERS:
                if name in accepted:
                    params.setdefault(name, output_dim)
                    break
        self._base = get_wiring(base, **params)
        super().__init__(self._base.units, self._base.output_dim, seed=seed)
        for what, given, actual in (
            ("units", units, self.units),
            ("output_dim", output_dim, self.output_dim),
        ):
            if given is not None and given != actual:
                raise WiringError(
                    f"adaptive: {what}={given} but the base wiring {base!r} has "
                    f"{what} {actual}; leave {what} out or make them agree"
                )
        self.adjacency = self._base.adjacency.copy()
        self.groups = {k: v.copy() for k, v in self._base.groups.items()}
        self.layers = [ids.copy() for ids in self._base.layers]
        if self._base.time_scales is not None:
            self.time_scales = self._base.time_scales.copy()

    # -- building

    def _check_input_dim(self, input_dim: int) -> None:
        if self._base is not None:
            self._base.build(input_dim)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        if self._base is not None:
            assert self._base.sensory_adjacency is not None
            self.sensory_adjacency = self._base.sensory_adjacency.copy()
            return
        assert self.input_dim is not None
        fanin = max(1, round(self.sensory_density * self.input_dim))
        self.connect_fanin(SENSORY, "inter", fanin, self.excitatory, rng=rng)

    # -- adapting

    def candidate_polarity(self) -> np.ndarray:
        """``(N, N)`` int8: the polarity each pair gets if the next update
        grows it (+1 with probability ``excitatory``).

        The draw depends only on ``seed`` and the number of updates so far,
        so scoring and updating agree and a reloaded wiring continues alike.
        """
        rng = np.random.default_rng([self.seed, 7, self.updates])
        excitatory = rng.random((self.units, self.units)) < self.excitatory
        return np.where(excitatory, 1, -1).astype(np.int8)

    def protected_synapses(self, scores: Any = None) -> np.ndarray:
        """``(N, N)`` bool: synapses an update may not prune.

        For every output neuron reachable from the inputs, one shortest path
        from a neuron with a sensory synapse: each neuron on it keeps the
        synapse from its strongest (highest score) predecessor one level up.
        """
        if self.sensory_adjacency is None:
            raise WiringError("adaptive: call build(input_dim) before updating")
        n = self.units
        present = self.adjacency != 0
        strength = np.zeros((n, n)) if scores is None else np.asarray(scores, float)
        strength = np.nan_to_num(strength, nan=-1.0, posinf=np.inf, neginf=-1.0)
        level = np.full(n, -1)
        parent = np.full(n, -1)
        frontier = np.any(self.sensory_adjacency != 0, axis=0)
        level[frontier] = 0
        depth = 0
        while frontier.any():
            edges = present & frontier[:, None] & (level < 0)[None, :]
            reached = edges.any(axis=0)
            if not reached.any():
                break
            depth += 1
            weights = np.where(edges[:, reached], strength[:, reached], -np.inf)
            parent[reached] = np.argmax(weights, axis=0)
            level[reached] = depth
            frontier = reached
        protected = np.zeros((n, n), bool)
        nodes = np.arange(self.output_dim)
        nodes = nodes[level[nodes] > 0]
        while nodes.size:
            protected[parent[nodes], nodes] = True
            nodes = parent[nodes]
            nodes = np.unique(nodes[level[nodes] > 0])
        return protected

    def update_connectivity(
        self, scores: Any, fraction: float, polarity: Any = None
    ) -> dict[str, np.ndarray]:
        """Prune the weakest ``fraction`` of synapses and grow as many.

        Args:
            scores (array): ``(N, N)`` source-row scores: weight magnitude of
                present synapses, growth gradient magnitude of absent ones,
                NaN for pairs that must not change (see
                :func:`ncp_core.adapt.synapse_scores`).
            fraction (float): Share of the scored synapses to move, ``[0, 1]``.
            polarity (array, optional): ``(N, N)`` polarity of grown
                synapses. Default: :meth:`candidate_polarity`.

        Returns:
            dict: ``pruned`` and ``grown``, ``(k, 2)`` arrays of
            ``(source, target)`` pairs, weakest pruned and strongest grown
            first.

        Raises:
            WiringError: scores of the wrong shape, a fraction outside
                ``[0, 1]``, or the wiring is not built.
        """
        n = self.units
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n, n):
            raise WiringError(
                f"adaptive: scores must have shape {(n, n)} (source, target), got "
                f"{scores.shape}"
            )
        fraction = _check_fraction("fraction", fraction)
        polarity = self.candidate_polarity() if polarity is None else polarity
        polarity = np.asarray(polarity)
        present = self.adjacency != 0
        scored = np.isfinite(scores)
        prunable = (present & scored & ~self.protected_synapses(scores)).reshape(-1)
        growable = (~present & scored).reshape(-1)
        count = round(fraction * np.count_nonzero(present & scored))
        count = min(count, int(prunable.sum()), int(growable.sum()))

        flat = scores.reshape(-1)
        weak = np.flatnonzero(prunable)
        weak = weak[np.argsort(flat[weak], kind="stable")][:count]
        strong = np.flatnonzero(growable)
        strong = strong[np.argsort(-flat[strong], kind="stable")][:count]
        grown_polarity = polarity.reshape(-1)[strong]
        if np.any((grown_polarity != 1) & (grown_polarity != -1)):
            raise WiringError("adaptive: polarity of grown synapses must be -1 or +1")

        adjacency = self.adjacency.reshape(-1)
        adjacency[weak] = 0
        adjacency[strong] = grown_polarity
        self.updates += 1
        return {
            "pruned": np.column_stack(np.unravel_index(weak, (n, n))),
            "grown": np.column_stack(np.unravel_index(strong, (n, n))),
        }

    def training_callbacks(
        self, adapt_every: int = 1, adapt_fraction: float = 0.1, **options: Any
    ) -> list[Any]:
        """The callbacks that adapt this wiring in :func:`ncp_core.train.fit`.

        Args:
            adapt_every (int): Epochs between updates. Default: ``1``.
            adapt_fraction (float): Share of synapses moved per update.
                Default: ``0.1``.
        """
        if options:
            raise WiringError(
                f"adaptive: unknown training options {sorted(options)}; it takes "
                "adapt_every and adapt_fraction"
            )
        from ncp_wiring_adaptive._training import AdaptiveConnectivity

        return [AdaptiveConnectivity(every=adapt_every, fraction=adapt_fraction)]

    # -- configuration

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["updates"] = self.updates
        return config

    def _restore(self, config: Mapping[str, Any]) -> None:
        super()._restore(config)
        self.updates = int(config.get("updates", 0))
