"""The classic wirings: fully connected, random, NCP and AutoNCP.

This module is also the core's built-in plugin: it registers its wirings
through the same hook that installed plugins implement.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.hookspecs import hookimpl
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["NCP", "AutoNCP", "FullyConnected", "Random"]

TWO_THIRDS_EXCITATORY = 2.0 / 3.0


class FullyConnected(Wiring):
    """Every neuron connects to every neuron, and every input to every neuron.

    Polarities are drawn excitatory with probability 2/3, as in the reference
    library.

    Args:
        units (int): Number of neurons.
        output_dim (int, optional): Output neurons (the first ids).
            Default: ``units``.
        erev_init_seed (int): Seed of the polarity draw. Default: ``1111``.
        self_connections (bool): Whether a neuron synapses onto itself.
            Default: ``True``.
    """

    name = "fully_connected"

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        erev_init_seed: int = 1111,
        self_connections: bool = True,
    ) -> None:
        super().__init__(units, output_dim, seed=erev_init_seed)
        self.self_connections = bool(self_connections)
        everyone = np.arange(self.units)
        self.add_group("motor", everyone[: self.output_dim])
        if self.output_dim < self.units:
            self.add_group("inter", everyone[self.output_dim :])
        self.set_layers([everyone])
        self.connect_dense(
            everyone,
            everyone,
            TWO_THIRDS_EXCITATORY,
            self_connections=self.self_connections,
        )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        self.connect_dense(SENSORY, np.arange(self.units), TWO_THIRDS_EXCITATORY)


class Random(Wiring):
    """A random graph keeping a fraction ``1 - sparsity_level`` of all synapses.

    Exactly ``round(N² (1 - s))`` distinct synapses and ``round(S N (1 - s))``
    sensory synapses, polarity excitatory with probability 2/3.

    Args:
        units (int): Number of neurons.
        output_dim (int, optional): Output neurons. Default: ``units``.
        sparsity_level (float): Fraction of synapses left out, in ``[0, 1)``.
            Default: ``0.0``.
        random_seed (int): Seed. Default: ``1111``.
    """

    name = "random"

    def __init__(
        self,
        units: int,
        output_dim: int | None = None,
        sparsity_level: float = 0.0,
        random_seed: int = 1111,
    ) -> None:
        super().__init__(units, output_dim, seed=random_seed)
        if not isinstance(sparsity_level, (int, float)) or not (
            0.0 <= sparsity_level < 1.0
        ):
            raise WiringError(
                f"invalid sparsity_level {sparsity_level!r}: expected a value in "
                "[0, 1), the fraction of synapses to leave out"
            )
        self.sparsity_level = float(sparsity_level)
        everyone = np.arange(self.units)
        self.add_group("motor", everyone[: self.output_dim])
        if self.output_dim < self.units:
            self.add_group("inter", everyone[self.output_dim :])
        self.set_layers([everyone])
        count = round(self.units * self.units * (1.0 - self.sparsity_level))
        pairs = self.rng.choice(self.units * self.units, size=count, replace=False)
        self.add_synapses(
            pairs // self.units, pairs % self.units, TWO_THIRDS_EXCITATORY
        )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None
        count = round(self.input_dim * self.units * (1.0 - self.sparsity_level))
        pairs = rng.choice(self.input_dim * self.units, size=count, replace=False)
        self.add_sensory_synapses(
            pairs // self.units, pairs % self.units, TWO_THIRDS_EXCITATORY
        )


class NCP(Wiring):
    """A Neural Circuit Policy: sensory → inter → command → motor layers.

    Neuron ids: motor ``[0, m)``, command ``[m, m + c)``, inter ``[m + c, N)``.
    The connectivity rule (every polarity an even draw):

    - each input feature reaches ``sensory_fanout`` distinct inter neurons;
      an inter neuron left unreached gets ``clip(S·fanout/inter, 1, S)`` inputs;
    - each inter neuron reaches ``inter_fanout`` distinct command neurons; a
      command neuron left unreached gets ``clip(inter·fanout/command, 1,
      inter)`` inter sources;
    - ``recurrent_command_synapses`` draws of a command → command synapse
      (with replacement, so self-loops and repeats are possible);
    - each motor neuron gets ``motor_fanin`` distinct command sources; a
      command neuron left unused reaches ``clip(motor·fanin/command, 1,
      motor)`` motor neurons.

    Args:
        inter_neurons (int): Size of the first layer.
        command_neurons (int): Size of the recurrent command layer.
        motor_neurons (int): Output neurons.
        sensory_fanout (int): Inter targets of each input feature.
        inter_fanout (int): Command targets of each inter neuron.
        recurrent_command_synapses (int): Command → command synapse draws.
        motor_fanin (int): Command sources of each motor neuron.
        seed (int): Seed. Default: ``22222``.
    """

    name = "ncp"

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = 22222,
    ) -> None:
        inter = _check_size("inter_neurons", inter_neurons)
        command = _check_size("command_neurons", command_neurons)
        motor = _check_size("motor_neurons", motor_neurons)
        self.sensory_fanout = _check_size("sensory_fanout", sensory_fanout)
        self.inter_fanout = _check_size("inter_fanout", inter_fanout)
        self.motor_fanin = _check_size("motor_fanin", motor_fanin)
        self.recurrent_command_synapses = _check_size(
            "recurrent_command_synapses", recurrent_command_synapses, minimum=0
        )
        if self.motor_fanin > command:
            raise WiringError(
                f"motor_fanin {self.motor_fanin} is larger than the "
                f"{command} command neurons; use motor_fanin <= {command}"
            )
        if self.sensory_fanout > inter:
            raise WiringError(
                f"sensory_fanout {self.sensory_fanout} is larger than the "
                f"{inter} inter neurons; use sensory_fanout <= {inter}"
            )
        if self.inter_fanout > command:
            raise WiringError(
                f"inter_fanout {self.inter_fanout} is larger than the "
                f"{command} command neurons; use inter_fanout <= {command}"
            )
        super().__init__(inter + command + motor, motor, seed=seed)

        self.add_group("motor", range(0, motor))
        self.add_group("command", range(motor, motor + command))
        self.add_group("inter", range(motor + command, motor + command + inter))
        self.set_layers(["inter", "command", "motor"])
        self.num_inter_neurons = inter
        self.num_command_neurons = command
        self.num_motor_neurons = motor

        self._connect_inter_to_command()
        self._connect_recurrent_command()
        self._connect_command_to_motor()

    def _connect_unreached(
        self,
        source: Any,
        target: str,
        fanin: int,
        adjacency: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        targets = self.groups[target]
        unreached = targets[~np.any(adjacency[:, targets] != 0, axis=0)]
        if unreached.size:
            self.connect_fanin(source, unreached, fanin, "random", rng=rng)

    def _connect_inter_to_command(self) -> None:
        self.connect_fanout("inter", "command", self.inter_fanout, rng=self.rng)
        inter, command = self.num_inter_neurons, self.num_command_neurons
        fanin = int(np.clip(inter * self.inter_fanout // command, 1, inter))
        self._connect_unreached("inter", "command", fanin, self.adjacency, self.rng)

    def _connect_recurrent_command(self) -> None:
        command = self.groups["command"]
        count = self.recurrent_command_synapses
        sources = self.rng.choice(command, size=count)
        targets = self.rng.choice(command, size=count)
        self.add_synapses(sources, targets, "random", rng=self.rng)

    def _connect_command_to_motor(self) -> None:
        self.connect_fanin("command", "motor", self.motor_fanin, rng=self.rng)
        command = self.groups["command"]
        motor, count = self.num_motor_neurons, self.num_command_neurons
        unused = command[~np.any(self.adjacency[command][:, : self.output_dim], axis=1)]
        if unused.size:
            fanout = int(np.clip(motor * self.motor_fanin // count, 1, motor))
            self.connect_fanout(unused, "motor", fanout, rng=self.rng)

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_dim is not None and self.sensory_adjacency is not None
        self.connect_fanout(SENSORY, "inter", self.sensory_fanout, rng=rng)
        inputs, inter = self.input_dim, self.num_inter_neurons
        fanin = int(np.clip(inputs * self.sensory_fanout // inter, 1, inputs))
        self._connect_unreached(SENSORY, "inter", fanin, self.sensory_adjacency, rng)


class AutoNCP(NCP):
    """An NCP whose layer sizes and fan-outs follow from a size and a sparsity.

    With ``density = 1 - sparsity_level`` and ``ic = units - output_size``:
    ``command = max(int(0.4 ic), 1)``, ``inter = ic - command``,
    ``sensory_fanout = max(int(inter·density), 1)``,
    ``inter_fanout = motor_fanin = max(int(command·density), 1)``,
    ``recurrent_command_synapses = max(int(2 command·density), 1)``.

    Args:
        units (int): Total number of neurons.
        output_size (int): Motor neurons; must be less than ``units - 2``.
        sparsity_level (float): In ``[0.1, 1.0]``. Default: ``0.5``.
        seed (int): Seed. Default: ``22222``.
    """

    name = "auto_ncp"

    def __init__(
        self,
        units: int,
        output_size: int,
        sparsity_level: float = 0.5,
        seed: int = 22222,
    ) -> None:
        units = _check_size("units", units)
        output_size = _check_size("output_size", output_size)
        if output_size >= units - 2:
            raise WiringError(
                f"output_size {output_size} must be less than units - 2 = "
                f"{units - 2} (given {units} units); use more units or fewer outputs"
            )
        _check_fraction("sparsity_level", sparsity_level, low=0.1, high=1.0)
        density = 1.0 - sparsity_level
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        super().__init__(
            inter,
            command,
            output_size,
            sensory_fanout=max(int(inter * density), 1),
            inter_fanout=max(int(command * density), 1),
            recurrent_command_synapses=max(int(command * density * 2), 1),
            motor_fanin=max(int(command * density), 1),
            seed=seed,
        )
        self.sparsity_level = float(sparsity_level)


CLASSIC_WIRINGS: tuple[type[Wiring], ...] = (FullyConnected, Random, NCP, AutoNCP)


@hookimpl
def ncp_register_wirings(register: Callable[..., Any]) -> None:
    for cls in CLASSIC_WIRINGS:
        register(cls)
