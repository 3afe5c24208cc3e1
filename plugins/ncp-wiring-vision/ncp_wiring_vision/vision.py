"""A convolution-like wiring: stacked feature maps with local receptive fields."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ncp_core.errors import WiringError
from ncp_core.wiring import Wiring

__all__ = ["Vision"]

Shape = tuple[int, int, int]


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise WiringError(f"wiring 'vision': {name} must be an integer, got {value!r}")
    if value < 1:
        raise WiringError(f"wiring 'vision': {name} must be at least 1, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: Any, *, low_open: bool) -> float:
    low = 0.0
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.floating))
        and (low < value if low_open else low <= value)
        and value <= 1.0
    )
    if not ok:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise WiringError(
            f"wiring 'vision': {name} must be a number in {interval}, got {value!r}"
        )
    return float(value)


def _fanin_of(density: float, population: int) -> int:
    return max(1, min(population, round(density * population)))


def window_pairs(
    below: Shape, above: Shape, kernel: int, stride: int
) -> tuple[np.ndarray, np.ndarray]:
    """Local synapse pairs between two ``(H, W, C)`` maps, ids in (row, col,
    channel) order within each map.

    Neuron ``(r, c, ·)`` above receives from every channel of the rows
    ``r·stride − p … r·stride − p + kernel − 1`` and the same columns below,
    ``p = (kernel − 1) // 2``, clipped to the map. Its window centre
    ``(r·stride, c·stride)`` is always inside the map when ``H_above =
    ceil(H_below / stride)``.
    """
    rows_below, cols_below, channels_below = below
    rows_above, cols_above, channels_above = above
    offsets = np.arange(kernel) - (kernel - 1) // 2
    rows = np.arange(rows_above)[:, None] * stride + offsets
    cols = np.arange(cols_above)[:, None] * stride + offsets
    # (H_above, W_above, k, k): one entry per target position and window cell
    src_r = np.broadcast_to(
        rows[:, None, :, None], (rows_above, cols_above, kernel, kernel)
    )
    src_c = np.broadcast_to(cols[None, :, None, :], src_r.shape)
    positions = np.arange(rows_above * cols_above).reshape(rows_above, cols_above)
    dst_pos = np.broadcast_to(positions[:, :, None, None], src_r.shape)
    inside = (src_r >= 0) & (src_r < rows_below) & (src_c >= 0) & (src_c < cols_below)
    src_pos = (src_r * cols_below + src_c)[inside]
    dst_pos = dst_pos[inside]
    sources = (
        src_pos[:, None, None] * channels_below + np.arange(channels_below)[:, None]
    )
    targets = dst_pos[:, None, None] * channels_above + np.arange(channels_above)
    sources, targets = np.broadcast_arrays(sources, targets)
    return sources.reshape(-1), targets.reshape(-1)


class Vision(Wiring):
    """Stacked feature maps, each neuron fed by a small window of the map below.

    The input is one frame per time step of ``H × W × C`` features flattened
    in (row, col, channel) order, so ``S = H·W·C`` exactly. Level 0 is the
    input frame; level ``l = 1 … L`` is feature map ``l − 1`` of shape
    ``H_l × W_l × C_l`` with ``H_l = ceil(H_{l−1} / stride)``, ``W_l`` alike
    and ``C_l = layer_channels[l − 1]``; level ``L + 1`` is the readout. Neuron
    ids, in order: ``readout [0, output_size)``, ``map_0``, ``map_1``, …, each
    map in (row, col, channel) order.

    Connectivity, with ``p = (kernel_size − 1) // 2`` and ``s = stride``:

    - *local*: neuron ``(r, c, ·)`` of level ``l`` receives from every channel
      of rows ``r·s − p … r·s − p + kernel_size − 1`` and the same columns of
      level ``l − 1`` (clipped to the map), each synapse kept with probability
      ``kernel_density``; a neuron left with none keeps one of its window
      synapses, drawn at random;
    - *readout*: each readout neuron receives from a fan-in of
      ``readout_density`` of the last map (a global readout);
    - *skip* (with ``skip``): every level reaches two levels up. Into a map,
      neuron ``(r, c, ·)`` of level ``l`` receives from every channel of
      position ``(r·s², c·s²)`` of level ``l − 2``, the centre of its
      receptive field there; into the readout, each readout neuron receives
      a fan-in of ``skip_density`` of level ``L − 1`` (global).

    So a map neuron's inputs lie inside its receptive field: the window of
    ``kernel_size`` one level down, of ``kernel_size + (kernel_size − 1)·s``
    two levels down. Synapses are excitatory with probability
    ``excitatory``. Layers are ``[map_0, …, map_{L−1}, readout]``; the wired
    CfC feeds each layer from the one before only, so it ignores the skips.

    Args:
        input_height (int): Frame rows ``H``.
        input_width (int): Frame columns ``W``.
        channels (int): Frame channels ``C``.
        kernel_size (int): Window side; at most the rows and columns of the
            map it reads. Default: ``3``.
        layer_channels (list[int]): Channels of each feature map.
            Default: ``(4, 8)``.
        stride (int): Spatial step between levels. Default: ``2``.
        output_size (int): Readout neurons. Default: ``10``.
        kernel_density (float): Probability of keeping a window synapse, in
            ``(0, 1]``. Default: ``1.0``.
        readout_density (float): Fan-in fraction of the last map per readout
            neuron, in ``(0, 1]``. Default: ``1.0``.
        skip (bool): Add the skip connections. Default: ``True``.
        skip_density (float): Fan-in fraction of the skipped level per readout
            neuron, in ``(0, 1]``. Default: ``0.25``.
        excitatory (float): Probability that a synapse is excitatory.
            Default: ``0.5``.
        seed (int): Seed of the synapse and polarity draws. Default: ``0``.
    """

    name = "vision"

    def __init__(
        self,
        input_height: int,
        input_width: int,
        channels: int,
        kernel_size: int = 3,
        layer_channels: Sequence[int] = (4, 8),
        stride: int = 2,
        output_size: int = 10,
        kernel_density: float = 1.0,
        readout_density: float = 1.0,
        skip: bool = True,
        skip_density: float = 0.25,
        excitatory: float = 0.5,
        seed: int = 0,
    ) -> None:
        height = _check_size("input_height", input_height)
        width = _check_size("input_width", input_width)
        depth = _check_size("channels", channels)
        self.kernel_size = _check_size("kernel_size", kernel_size)
        self.stride = _check_size("stride", stride)
        output = _check_size("output_size", output_size)
        if isinstance(layer_channels, (str, bytes)) or not isinstance(
            layer_channels, Sequence
        ):
            raise WiringError(
                "wiring 'vision': layer_channels must be a list of channel counts, "
                f"one per feature map, got {layer_channels!r}"
            )
        if not layer_channels:
            raise WiringError(
                "wiring 'vision': layer_channels is empty; give at least one "
                "feature map, e.g. layer_channels=[4, 8]"
            )
        self.layer_channels = [
            _check_size(f"layer_channels[{i}]", c) for i, c in enumerate(layer_channels)
        ]
        self.kernel_density = _check_fraction(
            "kernel_density", kernel_density, low_open=True
        )
        self.readout_density = _check_fraction(
            "readout_density", readout_density, low_open=True
        )
        self.skip = bool(skip)
        self.skip_density = _check_fraction("skip_density", skip_density, low_open=True)
        self.excitatory = _check_fraction("excitatory", excitatory, low_open=False)

        self.map_shapes: list[Shape] = [(height, width, depth)]
        for index, channels_of_map in enumerate(self.layer_channels):
            rows, cols, _ = self.map_shapes[-1]
            if self.kernel_size > rows or self.kernel_size > cols:
                below = "the input frame" if index == 0 else f"feature map {index - 1}"
                raise WiringError(
                    f"wiring 'vision': kernel_size {self.kernel_size} is larger than "
                    f"the {rows}×{cols} map of {below} that feature map {index} "
                    f"reads; use kernel_size <= {min(rows, cols)}, fewer layers "
                    "or a smaller stride"
                )
            self.map_shapes.append(
                (
                    math.ceil(rows / self.stride),
                    math.ceil(cols / self.stride),
                    channels_of_map,
                )
            )
        sizes = [h * w * c for h, w, c in self.map_shapes[1:]]
        super().__init__(output + sum(sizes), output, seed=seed)

        self.add_group("readout", np.arange(output))
        start = output
        for index, size in enumerate(sizes):
            self.add_group(f"map_{index}", np.arange(start, start + size))
            start += size
        maps = [f"map_{i}" for i in range(len(sizes))]
        self.set_layers([*maps, "readout"])

        for level in range(2, len(self.map_shapes)):
            local = window_pairs(
                self.map_shapes[level - 1],
                self.map_shapes[level],
                self.kernel_size,
                self.stride,
            )
            self._connect_local(level - 1, level, local, self.rng)
        fanin = _fanin_of(self.readout_density, sizes[-1])
        self.connect_fanin(maps[-1], "readout", fanin, self.excitatory, rng=self.rng)
        if self.skip:
            for level in range(1, len(self.map_shapes) - 1):
                self._connect_skip(level, self.rng)

    @property
    def num_maps(self) -> int:
        """Number of feature maps ``L``."""
        return len(self.layer_channels)

    @property
    def input_size(self) -> int:
        """Features per frame, ``H·W·C``."""
        rows, cols, depth = self.map_shapes[0]
        return rows * cols * depth

    def map_neurons(self, index: int) -> np.ndarray:
        """Neuron ids of feature map ``index`` as an ``(H, W, C)`` array."""
        if not 0 <= index < self.num_maps:
            raise WiringError(
                f"wiring 'vision' has feature maps 0..{self.num_maps - 1}, "
                f"not {index!r}"
            )
        return self.groups[f"map_{index}"].reshape(self.map_shapes[index + 1])

    def _map_ids(self, level: int) -> np.ndarray:
        """Flat neuron ids of map level ``level`` (``1 … L``)."""
        return self.groups[f"map_{level - 1}"]

    def _add(
        self,
        level: int,
        sources: np.ndarray,
        targets: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Synapses from ids ``sources`` within level ``level`` (input features
        when 0) to neuron ids ``targets``."""
        if level == 0:
            self.add_sensory_synapses(sources, targets, self.excitatory, rng=rng)
        else:
            self.add_synapses(
                self._map_ids(level)[sources], targets, self.excitatory, rng=rng
            )

    def _connect_local(
        self,
        below: int,
        above: int,
        pairs: tuple[np.ndarray, np.ndarray],
        rng: np.random.Generator,
    ) -> None:
        """Window synapses from level ``below`` to map level ``above``, thinned
        to ``kernel_density`` without leaving a neuron empty."""
        sources, targets = pairs
        if self.kernel_density < 1.0:
            keep = rng.random(sources.size) < self.kernel_density
            received = np.bincount(targets[keep], minlength=targets.max() + 1)
            # shuffled, the first pair of each empty target is a random one
            empty = rng.permutation(np.flatnonzero(received[targets] == 0))
            first = np.unique(targets[empty], return_index=True)[1]
            keep[empty[first]] = True
            sources, targets = sources[keep], targets[keep]
        self._add(below, sources, self._map_ids(above)[targets], rng)

    def _connect_skip(self, below: int, rng: np.random.Generator) -> None:
        """Skip synapses from level ``below`` to level ``below + 2``."""
        above = below + 2
        if above == len(self.map_shapes):
            rows, cols, depth = self.map_shapes[below]
            fanin = _fanin_of(self.skip_density, rows * cols * depth)
            readout = self.groups["readout"]
            keys = rng.random((readout.size, rows * cols * depth), dtype=np.float32)
            chosen = np.argpartition(keys, fanin - 1, axis=1)[:, :fanin]
            self._add(below, chosen.reshape(-1), np.repeat(readout, fanin), rng)
            return
        # a 1×1 window with stride s² reads the centre of the receptive field
        sources, targets = window_pairs(
            self.map_shapes[below], self.map_shapes[above], 1, self.stride**2
        )
        self._add(below, sources, self._map_ids(above)[targets], rng)

    def _check_input_dim(self, input_dim: int) -> None:
        rows, cols, depth = self.map_shapes[0]
        if input_dim != self.input_size:
            raise WiringError(
                f"wiring 'vision' needs input_dim {self.input_size} "
                f"({rows}×{cols}×{depth}) but got {input_dim}; flatten each "
                "frame in (row, col, channel) order"
            )

    def _build_sensory(self, rng: np.random.Generator) -> None:
        pairs = window_pairs(
            self.map_shapes[0], self.map_shapes[1], self.kernel_size, self.stride
        )
        self._connect_local(0, 1, pairs, rng)
        if self.skip:
            self._connect_skip(0, rng)
