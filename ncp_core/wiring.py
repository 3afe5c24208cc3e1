"""The Wiring protocol: a directed, signed graph over neurons and input features.

A wiring says which neuron talks to which, and with what sign. Row ``i`` of
``adjacency`` holds the synapses leaving neuron ``i``; column ``j`` those
arriving at neuron ``j``. The entry is the synapse's *polarity*: ``+1``
excitatory, ``-1`` inhibitory, ``0`` no synapse. ``sensory_adjacency`` does
the same from the input features to the neurons and exists once
:meth:`Wiring.build` has fixed the input size.

Output (motor) neurons are always the first ``output_dim`` ids.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ncp_core.errors import WiringError

__all__ = ["SENSORY", "NeuronSelector", "Wiring"]

SENSORY = "sensory"
"""Group name that stands for the input features in the group builders."""

NeuronSelector = str | Sequence[int] | np.ndarray | range
Polarity = int | float | str | np.ndarray

CONFIG_FORMAT = 1


def _check_size(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WiringError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise WiringError(f"{name} must be at least {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0):
    if not isinstance(value, (int, float, np.floating)) or not low <= value <= high:
        raise WiringError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class Wiring:
    """A directed graph of ``units`` neurons fed by ``input_dim`` features.

    Subclasses describe a connectivity rule: they declare neuron groups and
    layers in ``__init__``, draw the synapses between neurons there, and draw
    the sensory synapses in :meth:`_build_sensory`, which :meth:`build` calls
    once the input size is known. Their constructor arguments are recorded
    automatically, so :meth:`config` and :meth:`from_config` work for any
    subclass whose arguments are JSON values.

    Args:
        units (int): Number of neurons ``N``.
        output_dim (int, optional): Number of output (motor) neurons, the
            first ids. Default: ``units``.
        seed (int, optional): Seed of the generator that draws synapses and
            polarities. Default: ``0``.

    Attributes:
        adjacency: ``(N, N)`` int8 polarity matrix, source row, target column.
        sensory_adjacency: ``(S, N)`` int8, ``None`` before :meth:`build`.
        groups: ordered mapping of group name to neuron ids.
        layers: neuron ids per layer in feed-forward order.
        time_scales: optional ``(N,)`` float32 time-scale hint per neuron.
    """

    name: str = "wiring"
    """Registry name; subclasses registered by plugins set their own."""

    _params: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Wiring:
        self = super().__new__(cls)
        signature = inspect.signature(cls.__init__)
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as error:
            accepted = ", ".join(
                f"{p.name}={p.default!r}" if p.default is not p.empty else p.name
                for p in list(signature.parameters.values())[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )
            raise WiringError(
                f"wiring {cls.name!r}: {error}; accepted parameters: {accepted}"
            ) from None
        bound.apply_defaults()
        params = dict(bound.arguments)
        params.pop(next(iter(signature.parameters)))
        for key, parameter in signature.parameters.items():
            if parameter.kind is parameter.VAR_KEYWORD and key in params:
                params.update(params.pop(key))
        self._params = _jsonable(params)
        return self

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        seed: int = 0,
    ) -> None:
        units = _check_size("units", units)
        output_dim = units if output_dim is None else output_dim
        output_dim = _check_size("output_dim", output_dim)
        if output_dim > units:
            raise WiringError(
                f"output_dim {output_dim} is larger than units {units}: output "
                "neurons are a subset of the neurons, use output_dim <= units"
            )
        self.units = units
        self.output_dim = output_dim
        self.seed = int(seed)
        self.input_dim: int | None = None
        self.adjacency = np.zeros((units, units), dtype=np.int8)
        self.sensory_adjacency: np.ndarray | None = None
        self.groups: dict[str, np.ndarray] = {}
        self.layers: list[np.ndarray] = []
        self.time_scales: np.ndarray | None = None
        self.rng = np.random.default_rng(self.seed)
        self.sensory_rng = np.random.default_rng([self.seed, 1])

    # -- sizes and structure -------------------------------------------------

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments, JSON-safe."""
        return dict(self._params)

    def is_built(self) -> bool:
        return self.input_dim is not None

    @property
    def synapse_count(self) -> int:
        """Number of neuron-to-neuron synapses."""
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self) -> int:
        """Number of input-to-neuron synapses (0 before :meth:`build`)."""
        if self.sensory_adjacency is None:
            return 0
        return int(np.count_nonzero(self.sensory_adjacency))

    @property
    def density(self) -> float:
        """Fraction of the ``N²`` possible neuron-to-neuron synapses present."""
        return self.synapse_count / float(self.units * self.units)

    @property
    def num_layers(self) -> int:
        return len(self.layers) if self.layers else 1

    def get_neurons_of_layer(self, layer_id: int) -> np.ndarray:
        """Neuron ids of layer ``layer_id`` (all neurons if no layers are set)."""
        layers = self.layers or [np.arange(self.units)]
        if not 0 <= layer_id < len(layers):
            raise WiringError(
                f"unknown layer {layer_id!r}: this wiring has {len(layers)} layers"
            )
        return layers[layer_id]

    def add_group(self, name: str, neurons: Iterable[int] | range) -> np.ndarray:
        """Declare a named neuron group, in order; returns its ids."""
        if name == SENSORY:
            raise WiringError(f"group name {SENSORY!r} is reserved for the inputs")
        ids = np.asarray(
            list(neurons) if not isinstance(neurons, np.ndarray) else neurons
        )
        ids = ids.astype(np.int64).reshape(-1)
        self._check_neurons(ids, f"group {name!r}")
        self.groups[name] = ids
        return ids

    def set_layers(self, layers: Iterable[NeuronSelector]) -> None:
        """Declare the feed-forward layers, each a group name or ids."""
        self.layers = [self.neurons(layer) for layer in layers]

    def set_time_scales(self, time_scales: Any) -> None:
        """Set a per-neuron time-scale hint ``τ`` (a neuron integrates ``dt/τ``)."""
        values = np.broadcast_to(
            np.asarray(time_scales, dtype=np.float32), (self.units,)
        ).copy()
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise WiringError(
                f"time scales must be positive and finite, got {values.tolist()!r}"
            )
        self.time_scales = values

    def neurons(self, selector: NeuronSelector) -> np.ndarray:
        """Neuron ids for a group name, a range or a sequence of ids."""
        if isinstance(selector, str):
            if selector not in self.groups:
                raise WiringError(
                    f"unknown neuron group {selector!r}; this wiring has "
                    f"{list(self.groups)}"
                )
            return self.groups[selector]
        ids = np.asarray(selector, dtype=np.int64).reshape(-1)
        self._check_neurons(ids, "neuron ids")
        return ids

    def neuron_type(self, neuron: int) -> str:
        """Name of the first group holding ``neuron``: motor, command, inter..."""
        for group, ids in self.groups.items():
            if neuron in ids:
                return group
        return "motor" if neuron < self.output_dim else "inter"

    def get_type_of_neuron(self, neuron: int) -> str:
        return self.neuron_type(neuron)

    def neuron_types(self) -> list[str]:
        """The group name of every neuron, in id order."""
        types = ["motor" if i < self.output_dim else "inter" for i in range(self.units)]
        for group, ids in reversed(list(self.groups.items())):
            for i in ids:
                types[int(i)] = group
        return types

    # -- building ------------------------------------------------------------

    def build(self, input_dim: int) -> Wiring:
        """Fix the input size and draw the sensory synapses.

        Building again with the same size changes nothing; a different size
        is an error, so one wiring can be shared by several models safely.
        """
        input_dim = _check_size("input_dim", input_dim)
        if self.input_dim is not None:
            if input_dim != self.input_dim:
                raise WiringError(
                    f"wiring {self.name!r} was built for input_dim {self.input_dim} "
                    f"but is now asked for {input_dim}; create a new wiring for "
                    "a different input size"
                )
            return self
        self._check_input_dim(input_dim)
        self.input_dim = input_dim
        self.sensory_adjacency = np.zeros((input_dim, self.units), dtype=np.int8)
        self._build_sensory(self.sensory_rng)
        return self

    def _check_input_dim(self, input_dim: int) -> None:
        """Raise :class:`WiringError` if the family cannot take ``input_dim``."""

    def _build_sensory(self, rng: np.random.Generator) -> None:
        """Draw the input-to-neuron synapses; the base class connects nothing."""

    # -- adding synapses -----------------------------------------------------

    def _check_neurons(self, ids: np.ndarray, what: str) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.units):
            bad = ids[(ids < 0) | (ids >= self.units)][0]
            raise WiringError(
                f"{what}: neuron {int(bad)} is out of range, this wiring has "
                f"{self.units} units (ids 0..{self.units - 1})"
            )

    def _check_inputs(self, ids: np.ndarray) -> None:
        if self.input_dim is None:
            raise WiringError(
                "cannot add sensory synapses before build(input_dim) is called"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.input_dim):
            bad = ids[(ids < 0) | (ids >= self.input_dim)][0]
            raise WiringError(
                f"input feature {int(bad)} is out of range, the input has "
                f"{self.input_dim} features"
            )

    def _polarities(
        self, polarity: Polarity, count: int, rng: np.random.Generator | None
    ) -> np.ndarray:
        """Turn a polarity spec into ``count`` values of -1/+1.

        ``polarity`` is -1, +1, an array of them, or ``"random"`` for an even
        draw (or a float in [0, 1]: the probability of an excitatory synapse).
        """
        if isinstance(polarity, str):
            if polarity != "random":
                raise WiringError(
                    f"polarity must be -1, +1, 'random' or an excitatory "
                    f"fraction in [0, 1], got {polarity!r}"
                )
            polarity = 0.5
        if isinstance(polarity, float):
            fraction = _check_fraction("excitatory fraction", polarity)
            rng = rng if rng is not None else self.rng
            excitatory = rng.random(count, dtype=np.float32) < fraction
            return excitatory.astype(np.int8) * 2 - 1
        values = np.broadcast_to(np.asarray(polarity), (count,))
        if values.size and not np.all((values == 1) | (values == -1)):
            bad = values[(values != 1) & (values != -1)][0]
            raise WiringError(
                f"cannot add a synapse with polarity {bad.item()!r}: expected -1 or +1"
            )
        return values.astype(np.int8)

    def add_synapses(
        self,
        sources: Any,
        targets: Any,
        polarity: Polarity = 1,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Add neuron-to-neuron synapses ``sources[k] → targets[k]``.

        Arrays broadcast against each other; an existing synapse is overwritten.
        """
        sources, targets = np.broadcast_arrays(
            np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        )
        sources, targets = sources.reshape(-1), targets.reshape(-1)
        self._check_neurons(sources, "synapse source")
        self._check_neurons(targets, "synapse target")
        flat = self.adjacency.reshape(-1)
        flat[sources * self.units + targets] = self._polarities(
            polarity, sources.size, rng
        )

    def add_synapse(self, src: int, dest: int, polarity: int) -> None:
        """Add one synapse ``src → dest`` with polarity -1 or +1."""
        self.add_synapses([src], [dest], np.asarray([polarity]))

    def add_sensory_synapses(
        self,
        sources: Any,
        targets: Any,
        polarity: Polarity = 1,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Add input-to-neuron synapses ``feature sources[k] → neuron targets[k]``."""
        sources, targets = np.broadcast_arrays(
            np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        )
        sources, targets = sources.reshape(-1), targets.reshape(-1)
        self._check_inputs(sources)
        self._check_neurons(targets, "sensory synapse target")
        assert self.sensory_adjacency is not None
        self.sensory_adjacency[sources, targets] = self._polarities(
            polarity, sources.size, rng if rng is not None else self.sensory_rng
        )

    def add_sensory_synapse(self, src: int, dest: int, polarity: int) -> None:
        """Add one synapse from input feature ``src`` to neuron ``dest``."""
        self.add_sensory_synapses([src], [dest], np.asarray([polarity]))

    def remove_synapses(self, sources: Any, targets: Any) -> None:
        """Remove neuron-to-neuron synapses (absent ones are ignored)."""
        sources, targets = np.broadcast_arrays(
            np.asarray(sources, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        )
        self._check_neurons(sources.reshape(-1), "synapse source")
        self._check_neurons(targets.reshape(-1), "synapse target")
        self.adjacency[sources, targets] = 0

    # -- group builders ------------------------------------------------------

    def _endpoints(self, selector: NeuronSelector) -> tuple[np.ndarray, bool]:
        """Ids of a selector and whether they are input features."""
        if isinstance(selector, str) and selector == SENSORY:
            if self.input_dim is None:
                raise WiringError(
                    "the sensory inputs are only known after build(input_dim)"
                )
            return np.arange(self.input_dim), True
        return self.neurons(selector), False

    def _connect(
        self,
        sources: np.ndarray,
        targets: np.ndarray,
        from_inputs: bool,
        polarity: Polarity,
        rng: np.random.Generator | None,
    ) -> None:
        if from_inputs:
            self.add_sensory_synapses(sources, targets, polarity, rng=rng)
        else:
            self.add_synapses(sources, targets, polarity, rng=rng)

    def connect_dense(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
        self_connections: bool = True,
    ) -> None:
        """Connect every neuron of ``source`` to every neuron of ``target``."""
        src, from_inputs = self._endpoints(source)
        dst = self.neurons(target)
        s, t = np.meshgrid(src, dst, indexing="ij")
        s, t = s.reshape(-1), t.reshape(-1)
        if not self_connections and not from_inputs:
            keep = s != t
            s, t = s[keep], t[keep]
        self._connect(s, t, from_inputs, polarity, rng)

    def connect_fanout(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        fanout: int,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Connect each source neuron to ``fanout`` distinct random targets."""
        self._connect_fixed(source, target, fanout, polarity, rng, per_source=True)

    def connect_fanin(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        fanin: int,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Give each target neuron ``fanin`` distinct random sources."""
        self._connect_fixed(source, target, fanin, polarity, rng, per_source=False)

    def _connect_fixed(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        count: int,
        polarity: Polarity,
        rng: np.random.Generator | None,
        *,
        per_source: bool,
    ) -> None:
        """Fixed fan-out (``per_source``) or fixed fan-in, drawn without repeats."""
        src, from_inputs = self._endpoints(source)
        dst = self.neurons(target)
        fixed, drawn = (src, dst) if per_source else (dst, src)
        what, pool = ("fan-out", "target") if per_source else ("fan-in", "source")
        count = _check_size(what, count, minimum=0)
        if count > drawn.size:
            raise WiringError(
                f"{what} {count} is larger than the {pool} group of {drawn.size} "
                f"neurons; use a {what} of at most {drawn.size}"
            )
        rng = rng if rng is not None else self.rng
        chosen = drawn[_choose_without_replacement(rng, fixed.size, drawn.size, count)]
        repeated = np.repeat(fixed, count)
        sources, targets = (
            (repeated, chosen.reshape(-1))
            if per_source
            else (chosen.reshape(-1), repeated)
        )
        self._connect(sources, targets, from_inputs, polarity, rng)

    def connect_probability(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        probability: float,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
        self_connections: bool = True,
    ) -> None:
        """Connect each source-target pair independently with ``probability``."""
        probability = _check_fraction("probability", probability)
        src, from_inputs = self._endpoints(source)
        dst = self.neurons(target)
        rng = rng if rng is not None else self.rng
        keep = rng.random((src.size, dst.size)) < probability
        s, t = np.nonzero(keep)
        s, t = src[s], dst[t]
        if not self_connections and not from_inputs:
            s, t = s[s != t], t[s != t]
        self._connect(s, t, from_inputs, polarity, rng)

    def connect_one_to_one(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        polarity: Polarity = 1,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """Connect the k-th source to the k-th target; sizes must match."""
        src, from_inputs = self._endpoints(source)
        dst = self.neurons(target)
        if src.size != dst.size:
            raise WiringError(
                f"one-to-one needs groups of equal size, got {src.size} sources "
                f"and {dst.size} targets"
            )
        self._connect(src, dst, from_inputs, polarity, rng)

    def connect_skip(
        self,
        source: NeuronSelector,
        target: NeuronSelector,
        density: float = 0.5,
        polarity: Polarity = 1,
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """A skip connection: ``source`` reaches ``target`` past the layers between.

        Each target neuron gets ``max(1, round(density × |source|))`` sources.
        """
        density = _check_fraction("skip density", density)
        src, _ = self._endpoints(source)
        fanin = max(1, round(density * src.size))
        self.connect_fanin(source, target, fanin, polarity, rng=rng)

    def connect_residual(
        self,
        block_input: NeuronSelector,
        hidden: NeuronSelector,
        block_output: NeuronSelector,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """A residual block: ``input → hidden → output`` plus ``input → output``.

        The path through ``hidden`` is dense; the identity path is one-to-one
        and excitatory when the sizes match, dense otherwise.
        """
        self.connect_dense(block_input, hidden, polarity, rng=rng)
        self.connect_dense(hidden, block_output, polarity, rng=rng)
        src, _ = self._endpoints(block_input)
        if src.size == self.neurons(block_output).size:
            self.connect_one_to_one(block_input, block_output, 1)
        else:
            self.connect_dense(block_input, block_output, 1)

    def connect_attention_head(
        self,
        query: NeuronSelector,
        key: NeuronSelector,
        value: NeuronSelector,
        polarity: Polarity = "random",
        *,
        rng: np.random.Generator | None = None,
    ) -> None:
        """An attention head: dense ``query → key`` and ``key → value``."""
        self.connect_dense(query, key, polarity, rng=rng)
        self.connect_dense(key, value, polarity, rng=rng)

    # -- checks --------------------------------------------------------------

    def reachable(self) -> np.ndarray:
        """Boolean ``(N,)``: neurons with a path from some input feature."""
        if self.sensory_adjacency is None:
            raise WiringError("reachability needs the inputs: call build(input_dim)")
        reached = np.any(self.sensory_adjacency != 0, axis=0)
        connected = self.adjacency != 0
        frontier = reached
        while frontier.any():
            new = np.any(connected[frontier], axis=0) & ~reached
            reached = reached | new
            frontier = new
        return reached

    def validate(self) -> list[str]:
        """Describe what is wrong with this graph, in plain words.

        Returns an empty list for a sound wiring. Checks: the wiring is built,
        every neuron can be reached from the inputs, every output neuron has a
        path from the inputs, groups and layers hold valid ids.
        """
        problems: list[str] = []
        for name, ids in self.groups.items():
            if ids.size == 0:
                problems.append(f"group {name!r} is empty")
        for index, ids in enumerate(self.layers):
            if ids.size == 0:
                problems.append(f"layer {index} is empty")
        if self.sensory_adjacency is None:
            problems.append("not built: call build(input_dim) to draw the inputs")
            return problems
        if self.sensory_synapse_count == 0:
            problems.append("no input feature is connected to any neuron")
        reached = self.reachable()
        outputs = np.arange(self.output_dim)
        cut_off = outputs[~reached[outputs]]
        if cut_off.size:
            problems.append(
                f"output neurons {cut_off.tolist()} have no path from the inputs"
            )
        unreached = np.flatnonzero(~reached)
        unreached = unreached[unreached >= self.output_dim]
        if unreached.size:
            shown = unreached[:10].tolist()
            more = "" if unreached.size <= 10 else f" and {unreached.size - 10} more"
            problems.append(f"neurons {shown}{more} have no path from the inputs")
        return problems

    # -- configuration -------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """A JSON-safe description: name, parameters, seed and the matrices.

        The matrices are stored so a model can be rebuilt even where the class
        that made the wiring is not installed.
        """
        return {
            "format": CONFIG_FORMAT,
            "name": self.name,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "params": self.params,
            "seed": self.seed,
            "units": self.units,
            "output_dim": self.output_dim,
            "input_dim": self.input_dim,
            "adjacency": self.adjacency.tolist(),
            "sensory_adjacency": None
            if self.sensory_adjacency is None
            else self.sensory_adjacency.tolist(),
            "groups": {k: v.tolist() for k, v in self.groups.items()},
            "layers": [layer.tolist() for layer in self.layers],
            "time_scales": None
            if self.time_scales is None
            else self.time_scales.tolist(),
        }

    def get_config(self) -> dict[str, Any]:
        return self.config()

    def to_json(self) -> str:
        return json.dumps(self.config())

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Wiring:
        """Rebuild a wiring from :meth:`config`.

        On a subclass, the constructor runs with the recorded parameters and
        the stored matrices are then restored, so a wiring whose synapses
        changed after construction comes back exactly. On :class:`Wiring`
        itself, the result is a plain wiring carrying the stored structure.
        """
        if cls is Wiring:
            wiring = Wiring(int(config["units"]), int(config["output_dim"]))
            wiring.name = str(config.get("name", "wiring"))
            wiring._params = dict(config.get("params", {}))
            wiring.seed = int(config.get("seed", 0))
        else:
            wiring = cls(**config.get("params", {}))
        wiring._restore(config)
        return wiring

    def _restore(self, config: Mapping[str, Any]) -> None:
        adjacency = np.asarray(config["adjacency"], dtype=np.int8)
        if adjacency.shape != (self.units, self.units):
            raise WiringError(
                f"stored adjacency has shape {adjacency.shape} but the wiring has "
                f"{self.units} units"
            )
        self.adjacency = adjacency.copy()
        if config.get("input_dim") is not None and not self.is_built():
            self.input_dim = int(config["input_dim"])
        if config.get("sensory_adjacency") is not None:
            sensory = np.asarray(config["sensory_adjacency"], dtype=np.int8)
            self.input_dim = sensory.shape[0]
            self.sensory_adjacency = sensory.copy()
        groups = config.get("groups")
        if groups:
            self.groups = {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}
        layers = config.get("layers")
        if layers:
            self.layers = [np.asarray(v, dtype=np.int64) for v in layers]
        if config.get("time_scales") is not None:
            self.time_scales = np.asarray(config["time_scales"], dtype=np.float32)

    def copy(self) -> Wiring:
        """An independent wiring with the same class, parameters and matrices."""
        return type(self).from_config(self.config())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Wiring):
            return NotImplemented
        same_sensory = (
            self.sensory_adjacency is None and other.sensory_adjacency is None
        ) or (
            self.sensory_adjacency is not None
            and other.sensory_adjacency is not None
            and np.array_equal(self.sensory_adjacency, other.sensory_adjacency)
        )
        return (
            type(self) is type(other)
            and self.output_dim == other.output_dim
            and np.array_equal(self.adjacency, other.adjacency)
            and same_sensory
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"

    def summary(self) -> dict[str, Any]:
        """Sizes, counts and groups, for printing."""
        return {
            "name": self.name,
            "units": self.units,
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "synapses": self.synapse_count,
            "sensory_synapses": self.sensory_synapse_count,
            "density": round(self.density, 4),
            "groups": {k: int(v.size) for k, v in self.groups.items()},
            "layers": [int(v.size) for v in self.layers],
        }

    # -- drawing -------------------------------------------------------------

    def erev_initializer(self) -> np.ndarray:
        """Initial reversal potentials: the polarity of each synapse."""
        return self.adjacency.astype(np.float32)

    def sensory_erev_initializer(self) -> np.ndarray:
        if self.sensory_adjacency is None:
            raise WiringError("call build(input_dim) before creating a cell")
        return self.sensory_adjacency.astype(np.float32)

    def to_networkx(self, include_sensory: bool = True) -> Any:
        """A ``networkx.DiGraph``: nodes ``neuron_i`` / ``sensory_i`` with
        ``group``, edges with ``polarity`` (+1/-1)."""
        from ncp_core.drawing import wiring_to_networkx

        return wiring_to_networkx(self, include_sensory=include_sensory)

    def draw(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw the wiring with matplotlib: a graph when small, else the matrix."""
        from ncp_core.drawing import draw_wiring

        return draw_wiring(self, ax=ax, **kwargs)


def _choose_without_replacement(
    rng: np.random.Generator, rows: int, population: int, k: int
) -> np.ndarray:
    """``(rows, k)`` indices, each row ``k`` distinct draws from ``population``."""
    if k == 0 or rows == 0:
        return np.zeros((rows, k), dtype=np.int64)
    keys = rng.random((rows, population), dtype=np.float32)
    if k == population:
        return np.argsort(keys, axis=1)
    return np.argpartition(keys, k - 1, axis=1)[:, :k]
