"""A language-model wiring: stacked multi-head layers read out into logits."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import Wiring

__all__ = ["Language"]


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WiringError(
            f"wiring 'language': {name} must be an integer, got {value!r}"
        )
    if value < 1:
        raise WiringError(
            f"wiring 'language': {name} must be at least 1, got {value!r}"
        )
    return int(value)


def _check_fraction(name: str, value: Any, *, low_open: bool) -> float:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.floating))
        and (value > 0.0 if low_open else value >= 0.0)
        and value <= 1.0
    )
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise WiringError(
            f"wiring 'language': {name} must be a number in {interval}, got {value!r}"
        )
    return float(value)


def _fanin_of(density: float, population: int) -> int:
    return max(1, min(population, round(density * population)))


def _blockwise_fanin(
    rng: np.random.Generator, sources: np.ndarray, targets: np.ndarray, fanin: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs giving each target of block ``b`` (rows of ``(B, T)`` ``targets``)
    ``fanin`` distinct sources of block ``b`` (rows of ``(B, S)`` ``sources``)."""
    blocks, population = sources.shape
    shape = (blocks, targets.shape[1], population)
    if fanin >= population:
        chosen = np.broadcast_to(sources[:, None, :], shape)
    else:
        keys = rng.random(shape, dtype=np.float32)
        picks = np.argpartition(keys, fanin - 1, axis=2)[..., :fanin]
        chosen = np.take_along_axis(
            np.broadcast_to(sources[:, None, :], shape), picks, 2
        )
    receivers = np.broadcast_to(targets[:, :, None], chosen.shape)
    return chosen.reshape(-1), receivers.reshape(-1)


class Language(Wiring):
    """Stacked layers of attention heads with recurrence, read out into logits.

    Made to follow a :class:`~ncp_wiring_language.TokenEncoder`: the input is
    ``S = embed_dim`` features per token. With ``V = output_size`` (the
    vocabulary by default), ``h = hidden_size``, ``L = num_layers`` and ``H =
    num_heads``, the ``N = V + L·h`` neurons have ids, in order: ``logits [0,
    V)``, ``layer_0``, …, ``layer_{L−1}`` (``h`` each; head ``i`` of a layer is
    its ``i``-th block of ``d = h / H`` consecutive neurons).

    A *fan-in* ``ρ`` over ``n`` sources gives every target ``max(1,
    round(ρ n))`` distinct random sources:

    - input features → ``layer_0``, fan-in ``input_density`` over ``S``;
    - within each head of each layer: head neurons → the same head's
      neurons, fan-in ``recurrent_density`` over ``d`` (self-synapses
      allowed). This recurrence is the attention-like part: a head keeps its
      own context, and heads do not talk to each other inside a layer;
    - ``layer_l → layer_{l+1}``, fan-in ``ff_density`` over ``h``: the
      feed-forward step between layers, where heads mix;
    - ``layer_{L−1} → logits``, fan-in ``readout_density`` over ``h``.

    Synapses are excitatory with probability ``excitatory``. Layers are
    ``[layer_0, …, layer_{L−1}, logits]``; the wired CfC makes each layer's
    recurrence dense, so there heads mix inside a layer too.

    Args:
        vocab_size (int): Vocabulary size; the default number of logits.
        hidden_size (int): Neurons ``h`` per layer; a multiple of
            ``num_heads``.
        num_layers (int): Layers ``L``.
        num_heads (int): Heads ``H`` per layer.
        embed_dim (int, optional): Input features per token ``S``, the
            ``embed_dim`` of the token encoder. Default: ``hidden_size``.
        output_size (int, optional): Logit neurons ``V``. Default:
            ``vocab_size``.
        input_density (float): Fan-in fraction of input features per
            ``layer_0`` neuron, in ``(0, 1]``. Default: ``1.0``.
        recurrent_density (float): Fan-in fraction within a head, in
            ``(0, 1]``. Default: ``1.0``.
        ff_density (float): Fan-in fraction from the layer below, in
            ``(0, 1]``. Default: ``1.0``.
        readout_density (float): Fan-in fraction of the last layer per logit
            neuron, in ``(0, 1]``. Default: ``1.0``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed of the synapse and polarity draws. Default: ``0``.
    """

    name = "language"

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        embed_dim: int | None = None,
        output_size: int | None = None,
        input_density: float = 1.0,
        recurrent_density: float = 1.0,
        ff_density: float = 1.0,
        readout_density: float = 1.0,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.vocab_size = _check_size("vocab_size", vocab_size)
        hidden = _check_size("hidden_size", hidden_size)
        layers = _check_size("num_layers", num_layers)
        heads = _check_size("num_heads", num_heads)
        self.embed_dim = _check_size(
            "embed_dim", hidden if embed_dim is None else embed_dim
        )
        output = _check_size(
            "output_size", self.vocab_size if output_size is None else output_size
        )
        if hidden % heads:
            lower = max(heads, hidden - hidden % heads)
            raise WiringError(
                f"wiring 'language': hidden_size {hidden} is not divisible by "
                f"num_heads {heads}; use a multiple of {heads} (e.g. {lower} or "
                f"{lower + heads}) or a num_heads that divides {hidden}"
            )
        self.input_density = _check_fraction(
            "input_density", input_density, low_open=True
        )
        self.recurrent_density = _check_fraction(
            "recurrent_density", recurrent_density, low_open=True
        )
        self.ff_density = _check_fraction("ff_density", ff_density, low_open=True)
        self.readout_density = _check_fraction(
            "readout_density", readout_density, low_open=True
        )
        self.excitatory = _check_fraction("excitatory", excitatory, low_open=False)
        # ``num_layers`` of the base class counts the logits layer too
        self.hidden_size, self.depth, self.num_heads = hidden, layers, heads
        self.head_size = hidden // heads
        super().__init__(output + layers * hidden, output, seed=seed)

        self.add_group("logits", np.arange(output))
        for layer in range(layers):
            start = output + layer * hidden
            self.add_group(f"layer_{layer}", np.arange(start, start + hidden))
        names = [f"layer_{i}" for i in range(layers)]
        self.set_layers([*names, "logits"])

        recurrent = _fanin_of(self.recurrent_density, self.head_size)
        for layer in range(layers):
            heads_of_layer = self.heads(layer)
            pairs = _blockwise_fanin(
                self.rng, heads_of_layer, heads_of_layer, recurrent
            )
            self.add_synapses(*pairs, self.excitatory, rng=self.rng)
        feedforward = _fanin_of(self.ff_density, hidden)
        for below, above in itertools.pairwise(names):
            self.connect_fanin(below, above, feedforward, self.excitatory, rng=self.rng)
        readout = _fanin_of(self.readout_density, hidden)
        self.connect_fanin(names[-1], "logits", readout, self.excitatory, rng=self.rng)

    def heads(self, layer: int) -> np.ndarray:
        """``(num_heads, head_size)`` neuron ids of layer ``layer``."""
        if not 0 <= layer < self.depth:
            raise WiringError(
                f"wiring 'language' has layers 0..{self.depth - 1}, not {layer!r}"
            )
        return self.groups[f"layer_{layer}"].reshape(self.num_heads, self.head_size)

    def token_encoder(self, max_length: int, **kwargs: Any) -> Any:
        """A :class:`~ncp_wiring_language.TokenEncoder` that fits this wiring:
        ``vocab_size`` tokens in, ``embed_dim`` features out."""
        from ncp_wiring_language.encoder import TokenEncoder

        return TokenEncoder(self.vocab_size, self.embed_dim, max_length, **kwargs)

    def _check_input_dim(self, input_dim: int) -> None:
        if input_dim != self.embed_dim:
            raise WiringError(
                f"wiring 'language' needs input_dim {self.embed_dim} (its "
                f"embed_dim) but got {input_dim}; feed it the features of "
                f"TokenEncoder(vocab_size, embed_dim={self.embed_dim}, max_length) "
                f"or create the wiring with embed_dim={input_dim}"
            )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        fanin = _fanin_of(self.input_density, self.input_dim)
        pairs = _blockwise_fanin(
            rng,
            np.arange(self.input_dim)[None, :],
            self.groups["layer_0"][None, :],
            fanin,
        )
        self.add_sensory_synapses(*pairs, self.excitatory, rng=rng)
