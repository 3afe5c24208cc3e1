"""Drawing of the ``vision`` wiring for the docs: maps as grids, left to right."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

CHANNEL_SHIFT = 0.3
LEVEL_GAP = 1.5


def _grid_positions(shape: tuple[int, int, int], x0: float, cell: float) -> np.ndarray:
    """``(H·W·C, 2)`` positions of a map in (row, col, channel) order: a grid
    of pitch ``cell`` per channel, each channel shifted down and right like a
    stack of sheets."""
    rows, cols, channels = shape
    r, c, ch = np.meshgrid(
        np.arange(rows), np.arange(cols), np.arange(channels), indexing="ij"
    )
    x = x0 + (c + 0.5) * cell + ch * CHANNEL_SHIFT
    y = -((r + 0.5) * cell + ch * CHANNEL_SHIFT)
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=1).astype(float)


def _layout(wiring) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Positions of the input features and of the neurons; level x origins.

    Every map is drawn as large as the input frame, so a window looks as
    large, relative to the frame, as the part of the image it covers.
    """
    height, width, _ = wiring.map_shapes[0]
    origins, x0 = [], 0.0
    for _, _, channels in wiring.map_shapes:
        origins.append(x0)
        x0 += width + channels * CHANNEL_SHIFT + LEVEL_GAP
    inputs = _grid_positions(wiring.map_shapes[0], origins[0], 1.0)
    neurons = np.zeros((wiring.units, 2))
    for index in range(wiring.num_maps):
        ids = wiring.groups[f"map_{index}"]
        shape = wiring.map_shapes[index + 1]
        cell = height / shape[0]
        neurons[ids] = _grid_positions(shape, origins[index + 1], cell)
    readout = wiring.groups["readout"]
    neurons[readout, 0] = x0
    neurons[readout, 1] = -np.linspace(0, height, readout.size + 2)[1:-1]
    return inputs, neurons, [*origins, x0]


def draw(out_dir: Path) -> None:
    from ncp_wiring_vision import Vision

    wiring = Vision(6, 6, 1, layer_channels=[2, 2], output_size=3, seed=1).build(36)
    inputs, neurons, origins = _layout(wiring)
    fig, ax = plt.subplots(figsize=(8.0, 3.0), dpi=100)

    src, dst = np.nonzero(wiring.sensory_adjacency)
    segments = [(inputs[s], neurons[d]) for s, d in zip(src, dst, strict=True)]
    src, dst = np.nonzero(wiring.adjacency)
    segments += [(neurons[s], neurons[d]) for s, d in zip(src, dst, strict=True)]
    for start, end in segments:
        ax.plot(*zip(start, end, strict=True), color="0.85", linewidth=0.4, zorder=1)

    # the inputs of one neuron per map, to show a receptive field and a skip
    highlighted = [wiring.map_neurons(0)[1, 1, 0], wiring.map_neurons(1)[1, 1, 1]]
    for neuron in highlighted:
        for s in np.flatnonzero(wiring.sensory_adjacency[:, neuron]):
            ax.plot(
                *zip(inputs[s], neurons[neuron], strict=True),
                color="tab:blue",
                lw=1.0,
                zorder=2,
            )
        for s in np.flatnonzero(wiring.adjacency[:, neuron]):
            ax.plot(
                *zip(neurons[s], neurons[neuron], strict=True),
                color="tab:blue",
                lw=1.0,
                zorder=2,
            )

    ax.scatter(*inputs.T, s=18, color="tab:olive", zorder=3, label="input pixels")
    colors = ["tab:purple", "tab:cyan"]
    for index in range(wiring.num_maps):
        ids = wiring.groups[f"map_{index}"]
        ax.scatter(
            *neurons[ids].T,
            s=18,
            color=colors[index % 2],
            zorder=3,
            label=f"map_{index} {wiring.map_shapes[index + 1]}",
        )
    readout = wiring.groups["readout"]
    ax.scatter(*neurons[readout].T, s=30, color="tab:orange", zorder=3, label="readout")
    ax.scatter(
        *neurons[highlighted].T, s=60, facecolor="none", edgecolor="black", zorder=4
    )
    for x, name in zip(
        origins, ["input 6×6×1", "map_0", "map_1", "readout"], strict=True
    ):
        ax.text(x, -wiring.map_shapes[0][0] - 1.2, name, fontsize=8)
    ax.set_title(
        f"vision: {wiring.units} neurons, {wiring.synapse_count} synapses "
        "(blue: inputs of two neurons)",
        fontsize=9,
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.savefig(Path(out_dir) / "vision.png", bbox_inches="tight")
    plt.close(fig)
