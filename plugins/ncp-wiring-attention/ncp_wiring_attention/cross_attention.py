"""Cross-attention: main features query an external context, head by head."""

from __future__ import annotations

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import Wiring
from ncp_wiring_attention._blocks import (
    blockwise_fanin,
    check_density,
    check_fraction,
    check_heads,
    check_size,
    fanin_of,
)

__all__ = ["CrossAttention"]


class CrossAttention(Wiring):
    """Cross-attention from the main features to an external context.

    The input is the concatenation ``[main | context]`` of ``m`` main features
    and ``k = key_size`` context features: the context is always the *last*
    ``k`` columns, so ``S = m + k``. With ``H = num_heads``, ``q =
    query_size``, ``v = value_size`` and ``o = output_size``, the ``N = o + q +
    v`` neurons have ids, in order: ``integration [0, o)``, ``query``,
    ``value``. Head ``i`` owns the ``i``-th block of ``q/H`` query neurons,
    of ``v/H`` value neurons and of ``k/H`` context features.

    The integration neurons are the wiring's outputs. A *fan-in* ``ρ`` over
    ``n`` sources gives every target ``max(1, round(ρ n))`` distinct sources:

    - main features → query neurons, fan-in ``input_density`` over ``m``
      (every head sees all main features);
    - context block ``i`` → value head ``i``, fan-in ``input_density`` over
      ``k/H``;
    - query head ``i`` → value head ``i`` (the query gates the values), fan-in
      ``gate_density`` over ``q/H``;
    - value → integration, fan-in ``integration_density`` over ``v``: the
      gated values of all heads are integrated back here, the one place heads
      mix;
    - with ``residual``: query neuron ``j mod q`` → integration neuron ``j``,
      the main stream's own path around the attention.

    Main features never reach value neurons and the context never reaches
    query neurons. Every synapse is excitatory with probability
    ``excitatory``. Layers are ``[query + value, integration]``.

    Args:
        query_size (int): Query neurons ``q``; a multiple of ``num_heads``.
        key_size (int): Context features ``k`` at the end of the input; a
            multiple of ``num_heads``.
        value_size (int): Value neurons ``v``; a multiple of ``num_heads``.
        num_heads (int): Heads ``H``.
        output_size (int, optional): Integration neurons ``o``. Default:
            ``query_size``.
        main_size (int, optional): Main features ``m``; when given the input
            must have exactly ``m + k`` features, else ``m = S - k`` and the
            input needs more than ``k``. Default: ``None``.
        input_density (float): Fan-in fraction of features per query and value
            neuron, in ``(0, 1]``. Default: ``1.0``.
        gate_density (float): Fan-in fraction of a head's query neurons per
            value neuron, in ``(0, 1]``. Default: ``1.0``.
        integration_density (float): Fan-in fraction of value neurons per
            integration neuron, in ``(0, 1]``. Default: ``1.0``.
        residual (bool): Add the query → integration path. Default: ``True``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed of the synapse and polarity draws. Default: ``0``.
    """

    name = "cross_attention"

    def __init__(
        self,
        query_size: int,
        key_size: int,
        value_size: int,
        num_heads: int,
        output_size: int | None = None,
        main_size: int | None = None,
        input_density: float = 1.0,
        gate_density: float = 1.0,
        integration_density: float = 1.0,
        residual: bool = True,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        query = check_size(self.name, "query_size", query_size)
        key = check_size(self.name, "key_size", key_size)
        value = check_size(self.name, "value_size", value_size)
        heads = check_size(self.name, "num_heads", num_heads)
        output = query if output_size is None else output_size
        output = check_size(self.name, "output_size", output)
        self.main_size = (
            None if main_size is None else check_size(self.name, "main_size", main_size)
        )
        check_heads(self.name, "query_size", query, heads)
        check_heads(self.name, "key_size", key, heads)
        check_heads(self.name, "value_size", value, heads)
        self.input_density = check_density(self.name, "input_density", input_density)
        self.gate_density = check_density(self.name, "gate_density", gate_density)
        self.integration_density = check_density(
            self.name, "integration_density", integration_density
        )
        self.residual = bool(residual)
        self.excitatory = check_fraction(self.name, "excitatory", excitatory)
        self.query_size, self.key_size, self.value_size = query, key, value
        self.num_heads = heads
        super().__init__(output + query + value, output, seed=seed)

        self.add_group("integration", np.arange(output))
        self.add_group("query", np.arange(output, output + query))
        self.add_group("value", np.arange(output + query, output + query + value))
        self.set_layers(
            [
                np.concatenate([self.groups["query"], self.groups["value"]]),
                "integration",
            ]
        )

        gate = fanin_of(self.gate_density, query // heads)
        pairs = blockwise_fanin(
            self.rng, self.heads("query"), self.heads("value"), gate
        )
        self.add_synapses(*pairs, self.excitatory, rng=self.rng)
        integration = fanin_of(self.integration_density, value)
        self.connect_fanin(
            "value", "integration", integration, self.excitatory, rng=self.rng
        )
        if self.residual:
            self.add_synapses(
                self.groups["query"][np.arange(output) % query],
                self.groups["integration"],
                self.excitatory,
                rng=self.rng,
            )

    def heads(self, group: str) -> np.ndarray:
        """``(num_heads, size / num_heads)`` ids of ``query`` or ``value``."""
        return self.neurons(group).reshape(self.num_heads, -1)

    def context_features(self) -> np.ndarray:
        """Input columns that hold the context: the last ``key_size``."""
        if self.input_dim is None:
            raise WiringError(
                f"wiring {self.name!r}: the context columns are known after "
                "build(input_dim)"
            )
        return np.arange(self.input_dim - self.key_size, self.input_dim)

    def _check_input_dim(self, input_dim: int) -> None:
        key = self.key_size
        if self.main_size is not None and input_dim != self.main_size + key:
            raise WiringError(
                f"wiring {self.name!r} needs input_dim {self.main_size + key} "
                f"({self.main_size} main + {key} context features) but got "
                f"{input_dim}; concatenate the context as the last {key} columns"
            )
        if input_dim <= key:
            raise WiringError(
                f"wiring {self.name!r} needs input_dim > key_size {key} (main "
                f"features followed by {key} context features) but got "
                f"{input_dim}; concatenate at least one main feature before the "
                "context"
            )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        context = self.context_features()
        main = np.arange(context[0])
        fanin = fanin_of(self.input_density, main.size)
        pairs = blockwise_fanin(
            rng, main[None, :], self.groups["query"][None, :], fanin
        )
        self.add_sensory_synapses(*pairs, self.excitatory, rng=rng)
        blocks = context.reshape(self.num_heads, -1)
        fanin = fanin_of(self.input_density, blocks.shape[1])
        pairs = blockwise_fanin(rng, blocks, self.heads("value"), fanin)
        self.add_sensory_synapses(*pairs, self.excitatory, rng=rng)
