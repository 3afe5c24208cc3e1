"""Classification and regression metrics in NumPy.

Every function takes plain arrays and returns plain Python numbers or NumPy
arrays, so the results go straight into JSON. Targets and predictions of
sequence-to-sequence tasks come with a ``mask``: only observed steps count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "f1_scores",
    "macro_f1",
    "mean_absolute_error",
    "mean_squared_error",
    "regression_metrics",
]


def _labels(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} has shape {array.shape}; expected 1-D class ids")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{what} has dtype {array.dtype}; expected integer class ids")
    return array.astype(np.int64)


def confusion_matrix(
    y_true: Any, y_pred: Any, num_classes: int | None = None
) -> np.ndarray:
    """Count of each (true class, predicted class) pair.

    Args:
        y_true (array): ``(n,)`` integer class ids.
        y_pred (array): ``(n,)`` integer class ids.
        num_classes (int, optional): ``K``. Default: one more than the largest
            id seen.

    Returns:
        np.ndarray: ``(K, K)`` int64; row ``i`` column ``j`` counts the series
        of class ``i`` predicted as ``j``.
    """
    true = _labels(y_true, "y_true")
    pred = _labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true has {true.size} entries but y_pred has {pred.size}; "
            "expected one prediction per target"
        )
    if num_classes is None:
        num_classes = int(max(true.max(initial=-1), pred.max(initial=-1))) + 1
    if true.size and (
        min(true.min(), pred.min()) < 0 or max(true.max(), pred.max()) >= num_classes
    ):
        raise ValueError(
            f"class ids must lie in 0..{num_classes - 1}; got "
            f"{min(true.min(), pred.min())}..{max(true.max(), pred.max())}"
        )
    flat = true * num_classes + pred
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of predictions equal to the target (``nan`` when empty)."""
    true = _labels(y_true, "y_true")
    pred = _labels(y_pred, "y_pred")
    if true.size == 0:
        return float("nan")
    return float(np.mean(true == pred))


def f1_scores(confusion: np.ndarray) -> np.ndarray:
    """Per-class F1 from a confusion matrix.

    ``F1_k = 2 TP_k / (2 TP_k + FP_k + FN_k)``; a class that is neither
    present nor predicted gets ``nan``.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / denominator, np.nan)


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur.

    A class counts when it is present in the targets or in the predictions,
    as scikit-learn's ``f1_score(average="macro")`` does without ``labels``.
    """
    scores = f1_scores(confusion)
    present = ~np.isnan(scores)
    return float(scores[present].mean()) if present.any() else float("nan")


def classification_metrics(
    y_true: Any, y_pred: Any, num_classes: int
) -> dict[str, Any]:
    """Accuracy, macro F1, per-class F1 and the confusion matrix, JSON-safe.

    Args:
        y_true (array): ``(n,)`` class ids.
        y_pred (array): ``(n,)`` predicted class ids.
        num_classes (int): ``K``.

    Returns:
        dict: ``accuracy``, ``macro_f1``, ``f1`` (list of ``K``, ``None`` for a
        class neither present nor predicted), ``confusion_matrix`` (``K`` lists
        of ``K`` ints), ``n``.
    """
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    per_class = f1_scores(confusion)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(confusion),
        "f1": [None if np.isnan(v) else float(v) for v in per_class],
        "confusion_matrix": confusion.tolist(),
        "n": int(confusion.sum()),
    }


def _regression_arrays(
    y_true: Any, y_pred: Any, mask: Any
) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64)
    pred = np.asarray(y_pred, dtype=np.float64)
    if true.shape != pred.shape:
        raise ValueError(
            f"y_true has shape {true.shape} but y_pred has {pred.shape}; "
            "expected the same shape"
        )
    if mask is None:
        return true.reshape(-1), pred.reshape(-1)
    keep = np.asarray(mask, dtype=bool)
    if keep.shape != true.shape[: keep.ndim]:
        raise ValueError(
            f"mask has shape {keep.shape} but the targets have {true.shape}; "
            "expected a mask over the leading axes"
        )
    return true[keep].reshape(-1), pred[keep].reshape(-1)


def mean_squared_error(y_true: Any, y_pred: Any, mask: Any = None) -> float:
    """``mean((y - ŷ)²)`` over the observed entries (``nan`` when none).

    Args:
        y_true (array): ``(n, ...)`` targets, e.g. ``(n,)``, ``(n, D)`` or
            ``(n, L, D)``.
        y_pred (array): Predictions of the same shape.
        mask (array, optional): Boolean mask over the leading axes, e.g.
            ``(n, L)`` for per-step targets. Default: every entry counts.
    """
    true, pred = _regression_arrays(y_true, y_pred, mask)
    return float(np.mean((true - pred) ** 2)) if true.size else float("nan")


def mean_absolute_error(y_true: Any, y_pred: Any, mask: Any = None) -> float:
    """``mean(|y - ŷ|)`` over the observed entries (``nan`` when none).

    Args:
        y_true (array): Targets.
        y_pred (array): Predictions of the same shape.
        mask (array, optional): Boolean mask over the leading axes.
    """
    true, pred = _regression_arrays(y_true, y_pred, mask)
    return float(np.mean(np.abs(true - pred))) if true.size else float("nan")


def regression_metrics(y_true: Any, y_pred: Any, mask: Any = None) -> dict[str, Any]:
    """MSE, RMSE and MAE over the observed entries, JSON-safe."""
    mse = mean_squared_error(y_true, y_pred, mask)
    true, _ = _regression_arrays(y_true, y_pred, mask)
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": mean_absolute_error(y_true, y_pred, mask),
        "n": int(true.size),
    }
