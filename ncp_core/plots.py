"""PNG plots of a run: learning curves, the wiring, the confusion matrix.

Drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, so no
global pyplot state or display is touched, and saved atomically. Matplotlib
is the optional ``plot`` extra; :func:`plotting_available` says whether it is
installed.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ncp_core.runs import atomic_write_bytes

__all__ = [
    "plot_confusion_matrix",
    "plot_learning_curves",
    "plot_wiring",
    "plotting_available",
]


def plotting_available() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array(
        [np.nan if row.get(key) is None else float(row[key]) for row in history],
        dtype=np.float64,
    )


def plot_learning_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    best_epoch: int | None = None,
) -> Path:
    """Loss (and accuracy, when logged) per epoch for training and validation.

    Args:
        history (Sequence[Mapping]): One row per epoch with ``epoch``,
            ``loss``, ``val_loss`` and optionally ``accuracy``,
            ``val_accuracy``.
        path (str | Path): The PNG to write.
        best_epoch (int, optional): Marked with a vertical line.
    """
    with_accuracy = any(row.get("accuracy") is not None for row in history)
    figure = _figure(10 if with_accuracy else 5.5, 3.6)
    axes = figure.subplots(1, 2 if with_accuracy else 1, squeeze=False)[0]
    epochs = _series(history, "epoch")
    panels = [("loss", axes[0])]
    if with_accuracy:
        panels.append(("accuracy", axes[1]))
    for key, ax in panels:
        ax.plot(epochs, _series(history, key), marker=".", label="train")
        ax.plot(epochs, _series(history, f"val_{key}"), marker=".", label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", linestyle=":", label="best")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
    if with_accuracy:
        axes[1].set_ylim(0.0, 1.0)
    return _save(figure, path)


def plot_confusion_matrix(
    confusion: Any,
    classes: Sequence[Any],
    path: str | Path,
    *,
    title: str = "test confusion matrix",
) -> Path:
    """The confusion matrix as an image, counts written in the cells.

    Args:
        confusion (array): ``(K, K)`` counts, rows true, columns predicted.
        classes (Sequence): The ``K`` class labels.
        path (str | Path): The PNG to write.
        title (str): Axis title. Default: ``"test confusion matrix"``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    k = counts.shape[0]
    side = min(2.0 + 0.5 * k, 14.0)
    figure = _figure(side + 1.0, side)
    ax = figure.subplots()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(k)
    labels = [str(c) for c in classes]
    ax.set_xticks(ticks, labels, rotation=45 if k > 6 else 0, ha="right")
    ax.set_yticks(ticks, labels)
    if k <= 30:
        threshold = counts.max() / 2.0 if counts.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if counts[i, j] > threshold else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(figure, path)


def plot_wiring(wiring: Any, path: str | Path) -> Path:
    """The wiring as drawn by ``wiring.draw()``."""
    figure = _figure(8, 6)
    ax = figure.subplots()
    wiring.draw(ax=ax)
    return _save(figure, path)
