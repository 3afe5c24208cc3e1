"""Bands of neurons on dyadic time scales, like a multi-scale decomposition."""

from __future__ import annotations

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import SENSORY, Wiring, _check_fraction, _check_size

__all__ = ["Signal"]

INPUT_TARGETS = ("finest", "all")


def _fanin(density: float, size: int) -> int:
    """Sources per target for a ``density`` over a group of ``size``: 0 or ≥ 1."""
    if density == 0.0:
        return 0
    return max(1, round(density * size))


class Signal(Wiring):
    """One recurrent band of neurons per time scale ``2^i``, read by an output group.

    Neuron ids: motor ``[0, M)``, then band ``0`` (finest) to band ``K-1``
    (coarsest), ``P`` neurons each. Band ``i`` has time scale ``τ = 2^i``, so
    each band smooths over twice the span of the one before, as the levels of
    a multi-scale decomposition do; the motor neurons take
    ``output_time_scale``. With ``fanin(d, n) = max(1, round(d n))`` sources
    per target neuron, every polarity excitatory with probability
    ``excitatory``:

    - inputs → band ``0`` (``inputs_to="finest"``) or → every band
      (``inputs_to="all"``): ``fanin(sensory_density, S)`` features a neuron;
    - band ``i`` → band ``i`` (recurrence): ``fanin(recurrent_density, P)``;
    - band ``i`` → band ``i+1`` (each coarse band is fed by the finer one):
      ``fanin(cascade_density, P)``;
    - every band → motor (the outputs integrate all scales): each motor
      neuron reads ``fanin(output_density, P)`` neurons of *each* band.

    Layers, for the wired CfC: ``[all bands, motor]``.

    Args:
        input_size (int): Number of input features ``S``; building with
            another size is an error.
        num_scales (int): Number of bands ``K``.
        neurons_per_scale (int): Neurons per band ``P``.
        output_neurons (int): Motor neurons ``M``. Default: ``1``.
        inputs_to (str): ``"finest"`` or ``"all"``. Default: ``"finest"``.
        sensory_density (float): Fraction of the input features each fed
            neuron reads, in ``(0, 1]``. Default: ``1.0``.
        recurrent_density (float): Within-band fan-in fraction.
            Default: ``0.5``.
        cascade_density (float): Band ``i`` → ``i+1`` fan-in fraction.
            Default: ``0.5``.
        output_density (float): Band → motor fan-in fraction, in ``(0, 1]``.
            Default: ``0.5``.
        output_time_scale (float): Time scale of the motor neurons.
            Default: ``1.0``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed. Default: ``0``.
    """

    name = "signal"

    def __init__(
        self,
        input_size: int,
        num_scales: int,
        neurons_per_scale: int,
        output_neurons: int = 1,
        inputs_to: str = "finest",
        sensory_density: float = 1.0,
        recurrent_density: float = 0.5,
        cascade_density: float = 0.5,
        output_density: float = 0.5,
        output_time_scale: float = 1.0,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.input_size = _check_size("input_size", input_size)
        scales = _check_size("num_scales", num_scales)
        per_scale = _check_size("neurons_per_scale", neurons_per_scale)
        motor = _check_size("output_neurons", output_neurons)
        if inputs_to not in INPUT_TARGETS:
            raise WiringError(f"inputs_to must be 'finest' or 'all', got {inputs_to!r}")
        self.inputs_to = inputs_to
        self.sensory_density = _check_fraction("sensory_density", sensory_density)
        self.recurrent_density = _check_fraction("recurrent_density", recurrent_density)
        self.cascade_density = _check_fraction("cascade_density", cascade_density)
        self.output_density = _check_fraction("output_density", output_density)
        self.excitatory = _check_fraction("excitatory", excitatory)
        if (
            isinstance(output_time_scale, bool)
            or not isinstance(output_time_scale, (int, float))
            or not 0.0 < output_time_scale < float("inf")
        ):
            raise WiringError(
                "output_time_scale must be a positive number, got "
                f"{output_time_scale!r}"
            )
        if self.sensory_density == 0.0:
            raise WiringError(
                "sensory_density 0 leaves every band without input; use a value "
                "in (0, 1]"
            )
        if self.output_density == 0.0:
            raise WiringError(
                f"output_density 0 leaves the output neurons 0..{motor - 1} with "
                "no path from the inputs; use a value in (0, 1]"
            )
        if self.cascade_density == 0.0 and inputs_to == "finest" and scales > 1:
            raise WiringError(
                "cascade_density 0 with inputs_to='finest' leaves bands "
                f"1..{scales - 1} with no path from the inputs; use "
                "cascade_density > 0 or inputs_to='all'"
            )
        super().__init__(motor + scales * per_scale, motor, seed=seed)
        self.num_scales = scales
        self.neurons_per_scale = per_scale

        self.add_group("motor", range(motor))
        bands = [f"band_{i}" for i in range(scales)]
        for i, band in enumerate(bands):
            start = motor + i * per_scale
            self.add_group(band, range(start, start + per_scale))
        self.set_layers([np.arange(motor, self.units), "motor"])
        self.set_time_scales(
            np.concatenate(
                [
                    np.full(motor, float(output_time_scale)),
                    np.repeat(2.0 ** np.arange(scales), per_scale),
                ]
            )
        )

        recurrent = _fanin(self.recurrent_density, per_scale)
        cascade = _fanin(self.cascade_density, per_scale)
        readout = _fanin(self.output_density, per_scale)
        for i, band in enumerate(bands):
            self.connect_fanin(band, band, recurrent, self.excitatory)
            if i + 1 < scales:
                self.connect_fanin(band, bands[i + 1], cascade, self.excitatory)
            self.connect_fanin(band, "motor", readout, self.excitatory)

    def _check_input_dim(self, input_dim: int) -> None:
        if input_dim != self.input_size:
            raise WiringError(
                f"wiring 'signal' was made for input_size {self.input_size} but is "
                f"built with input_dim {input_dim}; create it with "
                f"input_size={input_dim}"
            )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        fanin = _fanin(self.sensory_density, self.input_size)
        fed = ["band_0"]
        if self.inputs_to == "all":
            fed = [f"band_{i}" for i in range(self.num_scales)]
        for band in fed:
            self.connect_fanin(SENSORY, band, fanin, self.excitatory, rng=rng)
