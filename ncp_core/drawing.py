"""Graph export and drawings of wirings (needs the ``plot`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ncp_core.wiring import Wiring

__all__ = ["GRAPH_DRAWING_LIMIT", "draw_wiring", "wiring_to_networkx"]

GRAPH_DRAWING_LIMIT = 120
"""Above this many neurons a wiring is drawn as a block matrix, not a graph."""

EXCITATORY_COLOR = "tab:green"
INHIBITORY_COLOR = "tab:red"
SENSORY_COLOR = "tab:olive"
GROUP_PALETTE = (
    "tab:orange",
    "tab:purple",
    "tab:blue",
    "tab:cyan",
    "tab:pink",
    "tab:brown",
    "tab:gray",
    "gold",
    "navy",
    "teal",
)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"drawing wirings needs {module.split('.')[0]}: "
            "pip install 'ncp-core[plot]'"
        ) from None


def wiring_to_networkx(wiring: Wiring, include_sensory: bool = True) -> Any:
    """The wiring as a ``networkx.DiGraph``.

    Nodes are ``neuron_{i}`` with attribute ``group`` (and ``sensory_{i}`` with
    group ``"sensory"`` when built and ``include_sensory``); edges carry
    ``polarity`` (+1 or -1).
    """
    nx = _require("networkx")
    graph = nx.DiGraph()
    types = wiring.neuron_types()
    for i in range(wiring.units):
        graph.add_node(f"neuron_{i}", group=types[i])
    src, dst = np.nonzero(wiring.adjacency)
    for s, d in zip(src.tolist(), dst.tolist(), strict=True):
        graph.add_edge(
            f"neuron_{s}", f"neuron_{d}", polarity=int(wiring.adjacency[s, d])
        )
    if include_sensory and wiring.sensory_adjacency is not None:
        for i in range(wiring.sensory_adjacency.shape[0]):
            graph.add_node(f"sensory_{i}", group="sensory")
        src, dst = np.nonzero(wiring.sensory_adjacency)
        for s, d in zip(src.tolist(), dst.tolist(), strict=True):
            graph.add_edge(
                f"sensory_{s}",
                f"neuron_{d}",
                polarity=int(wiring.sensory_adjacency[s, d]),
            )
    return graph


def _group_colors(wiring: Wiring) -> dict[str, str]:
    names = list(dict.fromkeys(wiring.neuron_types()))
    return {name: GROUP_PALETTE[k % len(GROUP_PALETTE)] for k, name in enumerate(names)}


def _layered_positions(wiring: Wiring, graph: Any) -> dict[str, tuple[float, float]]:
    """Sensory on the left, then each layer (or group), outputs on the right."""
    columns: list[list[str]] = []
    if wiring.sensory_adjacency is not None:
        columns.append(
            [f"sensory_{i}" for i in range(wiring.sensory_adjacency.shape[0])]
        )
    placed: set[int] = set()
    ordered = wiring.layers or list(reversed(list(wiring.groups.values())))
    for ids in ordered:
        column = [f"neuron_{i}" for i in ids.tolist() if i not in placed]
        placed.update(ids.tolist())
        if column:
            columns.append(column)
    rest = [f"neuron_{i}" for i in range(wiring.units) if i not in placed]
    if rest:
        columns.append(rest)
    positions = {}
    for x, column in enumerate(columns):
        for k, node in enumerate(column):
            positions[node] = (float(x), (k + 0.5) / len(column) - 0.5)
    return positions


def draw_wiring(
    wiring: Wiring,
    ax: Any = None,
    *,
    kind: str = "auto",
    with_labels: bool = False,
) -> Any:
    """Draw ``wiring`` on a matplotlib axis and return the axis.

    Args:
        kind (str): ``"graph"`` (neurons coloured by group, synapses green
            when excitatory, red when inhibitory), ``"matrix"`` (the signed
            adjacency as an image, group boundaries marked) or ``"auto"``:
            a graph up to ``GRAPH_DRAWING_LIMIT`` neurons. Default: ``"auto"``.
        with_labels (bool): Label graph nodes with their ids.
    """
    if kind not in ("auto", "graph", "matrix"):
        raise ValueError(
            f"unknown drawing kind {kind!r}: use 'auto', 'graph' or 'matrix'"
        )
    plt = _require("matplotlib.pyplot")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 6))
    if kind == "matrix" or (kind == "auto" and wiring.units > GRAPH_DRAWING_LIMIT):
        return _draw_matrix(wiring, ax)
    return _draw_graph(wiring, ax, with_labels)


def _draw_graph(wiring: Wiring, ax: Any, with_labels: bool) -> Any:
    nx = _require("networkx")
    patches = _require("matplotlib.patches")
    graph = wiring_to_networkx(wiring)
    positions = _layered_positions(wiring, graph)
    colors = _group_colors(wiring)
    colors["sensory"] = SENSORY_COLOR
    node_colors = [colors[graph.nodes[n]["group"]] for n in graph.nodes]
    edge_colors = [
        EXCITATORY_COLOR if graph.edges[e]["polarity"] > 0 else INHIBITORY_COLOR
        for e in graph.edges
    ]
    nx.draw_networkx(
        graph,
        pos=positions,
        ax=ax,
        node_color=node_colors,
        edge_color=edge_colors,
        node_size=120,
        width=0.6,
        arrowsize=6,
        with_labels=with_labels,
        font_size=6,
    )
    handles = [patches.Patch(color=c, label=g) for g, c in colors.items()]
    handles += [
        patches.Patch(color=EXCITATORY_COLOR, label="excitatory"),
        patches.Patch(color=INHIBITORY_COLOR, label="inhibitory"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=7, frameon=False)
    ax.set_title(
        f"{wiring.name}: {wiring.units} neurons, {wiring.synapse_count} synapses"
    )
    ax.set_axis_off()
    return ax


def _draw_matrix(wiring: Wiring, ax: Any) -> Any:
    """The signed adjacency, rows and columns ordered by group."""
    order = np.concatenate(
        [ids for ids in wiring.groups.values()] or [np.arange(wiring.units)]
    )
    order = np.concatenate(
        [order, np.setdiff1d(np.arange(wiring.units), order, assume_unique=False)]
    )
    _, first = np.unique(order, return_index=True)
    order = order[np.sort(first)]
    matrix = wiring.adjacency[np.ix_(order, order)]
    ax.imshow(matrix, cmap="RdYlGn", vmin=-1, vmax=1, interpolation="nearest")
    edge = 0
    for name, ids in wiring.groups.items():
        edge += ids.size
        ax.axhline(edge - 0.5, color="black", linewidth=0.5)
        ax.axvline(edge - 0.5, color="black", linewidth=0.5)
        ax.text(edge - ids.size / 2, -1.5, name, ha="center", fontsize=7)
    ax.set_xlabel("target neuron (by group)")
    ax.set_ylabel("source neuron (by group)")
    ax.set_title(
        f"{wiring.name}: {wiring.units} neurons, {wiring.synapse_count} synapses"
    )
    return ax
