"""Drawings of the ``attention`` and ``cross_attention`` wirings for the docs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ncp_core.wiring import Wiring


def draw_in_columns(wiring: Wiring, columns: list[str], path: Path) -> None:
    """Draw ``wiring`` as a graph, one column per named group, left to right.

    The core drawing places columns by ``layers``, so a copy of the wiring
    gets the display columns as its layers; the wiring itself is unchanged.
    """
    shown = wiring.copy()
    shown.set_layers(columns)
    fig, ax = plt.subplots(figsize=(6.5, 4.0), dpi=72)
    shown.draw(ax=ax)
    legend = ax.get_legend()
    legend.set_loc("center left")
    legend.set_bbox_to_anchor((1.0, 0.5))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def draw(out_dir: Path) -> None:
    from ncp_wiring_attention import Attention, CrossAttention

    attention = Attention(
        hidden_size=4, num_heads=2, ff_size=4, output_size=2, seed=1
    ).build(3)
    draw_in_columns(
        attention,
        ["query", "key", "value", "head_output", "feedforward", "readout"],
        Path(out_dir) / "attention.png",
    )

    cross = CrossAttention(
        query_size=4, key_size=4, value_size=4, num_heads=2, output_size=3, seed=1
    ).build(6)
    draw_in_columns(
        cross, ["query", "value", "integration"], Path(out_dir) / "cross_attention.png"
    )
