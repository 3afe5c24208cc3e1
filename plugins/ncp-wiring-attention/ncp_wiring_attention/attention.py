"""A multi-head self-attention block followed by a feed-forward group."""

from __future__ import annotations

import numpy as np

from ncp_core.wiring import Wiring
from ncp_wiring_attention._blocks import (
    blockwise_fanin,
    check_density,
    check_fraction,
    check_heads,
    check_size,
    fanin_of,
)

__all__ = ["Attention"]


class Attention(Wiring):
    """Multi-head self-attention followed by a position-wise feed-forward group.

    With ``h = hidden_size``, ``H = num_heads``, ``d = h / H``, ``f = ff_size``
    and ``o = output_size``, the ``N = o + 4h + f`` neurons have ids, in order:

    ``readout [0, o)``, ``query``, ``key``, ``value``, ``head_output`` (``h``
    each, head ``i`` being their ``i``-th block of ``d`` consecutive neurons),
    ``feedforward`` (``f``).

    The readout neurons are the wiring's outputs. A *fan-in* ``ρ`` over ``n``
    sources gives every target ``max(1, round(ρ n))`` distinct random sources:

    - input features → query, key and value of every head, fan-in
      ``input_density`` over all ``S`` features (every head sees the input);
    - within head ``i`` only: ``query_i → key_i → value_i → head_output_i``,
      each fan-in ``head_density`` over ``d``;
    - ``head_output → feedforward``, fan-in ``ff_density`` over ``h``: the
      feed-forward group is the one place where heads mix;
    - ``feedforward → readout``, fan-in ``ff_density`` over ``f``.

    There are no other synapses. Every synapse is excitatory with probability
    ``excitatory``, inhibitory otherwise. Layers, in feed-forward order, are
    ``[query + key + value, head_output, feedforward, readout]``; the wired CfC
    takes each layer's inputs from the layer before, so there ``query → key →
    value`` runs inside the first layer's dense recurrence.

    Args:
        hidden_size (int): Neurons ``h`` of each of query, key, value and
            head_output; a multiple of ``num_heads``.
        num_heads (int): Heads ``H``.
        ff_size (int): Neurons ``f`` of the feed-forward group.
        output_size (int, optional): Readout neurons ``o``. Default:
            ``hidden_size``, the width of a transformer block's output.
        input_density (float): Fan-in fraction of input features per query,
            key and value neuron, in ``(0, 1]``. Default: ``1.0``.
        head_density (float): Fan-in fraction within a head, in ``(0, 1]``.
            Default: ``1.0``.
        ff_density (float): Fan-in fraction into the feed-forward and readout
            neurons, in ``(0, 1]``. Default: ``1.0``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed of the synapse and polarity draws. Default: ``0``.
    """

    name = "attention"

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        ff_size: int,
        output_size: int | None = None,
        input_density: float = 1.0,
        head_density: float = 1.0,
        ff_density: float = 1.0,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        hidden = check_size(self.name, "hidden_size", hidden_size)
        heads = check_size(self.name, "num_heads", num_heads)
        ff = check_size(self.name, "ff_size", ff_size)
        output = hidden if output_size is None else output_size
        output = check_size(self.name, "output_size", output)
        self.head_size = check_heads(self.name, "hidden_size", hidden, heads)
        self.input_density = check_density(self.name, "input_density", input_density)
        self.head_density = check_density(self.name, "head_density", head_density)
        self.ff_density = check_density(self.name, "ff_density", ff_density)
        self.excitatory = check_fraction(self.name, "excitatory", excitatory)
        self.hidden_size, self.num_heads, self.ff_size = hidden, heads, ff
        super().__init__(output + 4 * hidden + ff, output, seed=seed)

        start = output
        self.add_group("readout", np.arange(output))
        for group in ("query", "key", "value", "head_output"):
            self.add_group(group, np.arange(start, start + hidden))
            start += hidden
        self.add_group("feedforward", np.arange(start, start + ff))
        qkv = np.concatenate([self.groups[g] for g in ("query", "key", "value")])
        self.set_layers([qkv, "head_output", "feedforward", "readout"])

        within_head = fanin_of(self.head_density, self.head_size)
        for source, target in (
            ("query", "key"),
            ("key", "value"),
            ("value", "head_output"),
        ):
            pairs = blockwise_fanin(
                self.rng, self.heads(source), self.heads(target), within_head
            )
            self.add_synapses(*pairs, self.excitatory, rng=self.rng)
        for source, target in (
            ("head_output", "feedforward"),
            ("feedforward", "readout"),
        ):
            fanin = fanin_of(self.ff_density, self.groups[source].size)
            self.connect_fanin(source, target, fanin, self.excitatory, rng=self.rng)

    def heads(self, group: str) -> np.ndarray:
        """``(num_heads, head_size)`` neuron ids of ``query``, ``key``, ``value``
        or ``head_output``, one row a head."""
        return self.neurons(group).reshape(self.num_heads, self.head_size)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        qkv = self.layers[0]
        fanin = fanin_of(self.input_density, self.input_dim)
        pairs = blockwise_fanin(
            rng, np.arange(self.input_dim)[None, :], qkv[None, :], fanin
        )
        self.add_sensory_synapses(*pairs, self.excitatory, rng=rng)
