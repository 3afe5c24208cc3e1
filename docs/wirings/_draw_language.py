"""Drawing of the ``language`` wiring for the docs: heads as separate stacks."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

HEAD_GAP = 0.8


def _positions(wiring) -> tuple[np.ndarray, np.ndarray]:
    """``(S, 2)`` input and ``(N, 2)`` neuron positions: one column per layer,
    a gap between the heads of a layer."""
    neurons = np.zeros((wiring.units, 2))
    span = wiring.hidden_size + (wiring.num_heads - 1) * HEAD_GAP
    for layer in range(wiring.depth):
        heads = wiring.heads(layer)
        offsets = np.arange(heads.size) + np.repeat(
            np.arange(wiring.num_heads) * HEAD_GAP, wiring.head_size
        )
        neurons[heads.reshape(-1)] = np.stack(
            [np.full(heads.size, layer + 1.0), -offsets], axis=1
        )
    logits = wiring.groups["logits"]
    neurons[logits, 0] = wiring.depth + 1.0
    neurons[logits, 1] = -np.linspace(0, span - 1, logits.size)
    inputs = np.stack(
        [np.zeros(wiring.input_dim), -np.linspace(0, span - 1, wiring.input_dim)],
        axis=1,
    )
    return inputs, neurons


def draw(out_dir: Path) -> None:
    from ncp_wiring_language import Language

    wiring = Language(
        vocab_size=4, hidden_size=6, num_layers=2, num_heads=2, embed_dim=3, seed=1
    ).build(3)
    inputs, neurons = _positions(wiring)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=80)

    def synapse(start, end, polarity, same_column):
        # recurrence inside a head bends out of the column so it stays visible
        style = "arc3,rad=0.6" if same_column else "arc3,rad=0.0"
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops=dict(
                arrowstyle="-|>",
                color="tab:green" if polarity > 0 else "tab:red",
                lw=0.6,
                shrinkA=4,
                shrinkB=4,
                connectionstyle=style,
                mutation_scale=6,
            ),
        )

    for s, d in zip(*np.nonzero(wiring.sensory_adjacency), strict=True):
        synapse(inputs[s], neurons[d], wiring.sensory_adjacency[s, d], False)
    for s, d in zip(*np.nonzero(wiring.adjacency), strict=True):
        if s != d:
            same = neurons[s, 0] == neurons[d, 0]
            synapse(neurons[s], neurons[d], wiring.adjacency[s, d], same)
    ax.scatter(*inputs.T, s=50, color="tab:olive", zorder=3, label="inputs (embed_dim)")
    for layer, color in zip(
        range(wiring.depth), ["tab:purple", "tab:blue"], strict=False
    ):
        ids = wiring.groups[f"layer_{layer}"]
        ax.scatter(*neurons[ids].T, s=50, color=color, zorder=3, label=f"layer_{layer}")
    logits = wiring.groups["logits"]
    ax.scatter(*neurons[logits].T, s=50, color="tab:orange", zorder=3, label="logits")
    ax.set_title(
        f"language: {wiring.units} neurons, {wiring.synapse_count} synapses "
        "(2 heads a layer; self-synapses not drawn)",
        fontsize=9,
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    ax.set_axis_off()
    fig.savefig(Path(out_dir) / "language.png", bbox_inches="tight")
    plt.close(fig)
