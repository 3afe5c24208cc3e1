"""Drawings of the wirings that change at run time: ``adaptive``,
``dynamic_routing`` and ``meta``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ncp_core.wiring import Wiring


def _shown(wiring: Wiring, columns: list) -> Wiring:
    """A copy laid out with one column per entry of ``columns``."""
    shown = wiring.copy()
    shown.set_layers(columns)
    return shown


def _save(fig, path: Path) -> None:
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _legend_outside(ax) -> None:
    legend = ax.get_legend()
    if legend is not None:
        legend.set_loc("center left")
        legend.set_bbox_to_anchor((1.0, 0.5))


def draw_adaptive(out_dir: Path) -> None:
    from ncp_wiring_adaptive import Adaptive

    wiring = Adaptive(9, 2, density=0.3, sensory_density=0.5, seed=1).build(3)
    before = _shown(wiring, ["inter", "motor"])
    rng = np.random.default_rng(0)
    for _ in range(3):  # random scores stand in for a model's
        wiring.update_connectivity(rng.random((9, 9)), 0.3)
    after = _shown(wiring, ["inter", "motor"])
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), dpi=72)
    for ax, shown, title in zip(
        axes, (before, after), ("start", "after 3 updates"), strict=True
    ):
        shown.draw(ax=ax)
        ax.set_title(f"{title}: {shown.synapse_count} synapses")
    axes[0].get_legend().remove()
    _legend_outside(axes[1])
    _save(fig, Path(out_dir) / "adaptive.png")


def draw_dynamic_routing(out_dir: Path) -> None:
    from ncp_wiring_routing import DynamicRouting

    wiring = DynamicRouting(3, 2, output_capsules=2, seed=1).build(2)
    primary = wiring.primary_capsule_ids.reshape(-1)
    outputs = np.arange(wiring.output_dim)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=72)
    _shown(wiring, [primary, outputs]).draw(ax=ax)
    _legend_outside(ax)
    _save(fig, Path(out_dir) / "dynamic_routing.png")


def draw_meta(out_dir: Path) -> None:
    from ncp_wiring_meta import Meta

    wiring = Meta(5, 3, output_neurons=1, seed=1).build(2)
    fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=72)
    _shown(wiring, ["slow", "fast", "motor"]).draw(ax=ax)
    _legend_outside(ax)
    _save(fig, Path(out_dir) / "meta.png")


def draw(out_dir: Path) -> None:
    draw_adaptive(out_dir)
    draw_dynamic_routing(out_dir)
    draw_meta(out_dir)
