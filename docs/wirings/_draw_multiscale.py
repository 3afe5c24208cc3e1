"""Drawings of the ``multiscale`` and ``hierarchical`` wirings for the docs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from ncp_core.wiring import Wiring


def save_drawing(wiring: Wiring, columns: list[str], path: Path) -> None:
    """Draw ``wiring`` with one column per named group, left to right.

    The drawing lays columns out by ``layers``, so a copy gets the display
    columns as its layers; the wiring itself is left as it is.
    """
    shown = wiring.copy()
    shown.set_layers(columns)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=72)
    shown.draw(ax=ax)
    legend = ax.get_legend()
    legend.set_loc("center left")
    legend.set_bbox_to_anchor((1.0, 0.5))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def draw(out_dir: Path) -> None:
    from ncp_wiring_multiscale import Hierarchical, MultiScale

    multiscale = MultiScale(
        fast_neurons=6, medium_neurons=4, slow_neurons=3, output_neurons=2, seed=1
    ).build(3)
    save_drawing(
        multiscale,
        ["slow", "medium", "fast", "motor"],
        Path(out_dir) / "multiscale.png",
    )

    hierarchical = Hierarchical([5, 4, 3, 2], seed=1).build(3)
    save_drawing(
        hierarchical,
        [f"layer_{i}" for i in range(4)],
        Path(out_dir) / "hierarchical.png",
    )
