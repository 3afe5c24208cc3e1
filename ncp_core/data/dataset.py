"""The in-memory form of a sequence dataset, label encoding and standardising.

Every reader in :mod:`ncp_core.data.readers` returns a :class:`SequenceDataset`:
series padded with zeros to one common length ``L``, a boolean mask that is
``True`` where a real observation is, and the labels as they appear in the file.

Conventions shared by every part of the data package:

* ``X`` is ``(n, L, C)`` float32. Steps past a series' end are padding: mask
  ``False`` and ``X`` 0 in every channel.
* A value missing *inside* a series (``?`` or ``NaN`` in a file) also gets mask
  ``False`` and ``X`` 0 in every channel at that step: a step is observed in
  all channels or in none.
* The length of a series is the index of its last observed step plus one, so
  missing values inside a series do not shorten it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncp_core.errors import DataError

__all__ = [
    "TASKS",
    "SequenceDataset",
    "Standardizer",
    "decode_labels",
    "encode_labels",
]

TASKS = ("classification", "regression")

_SPLITS = ("train", "test")


def _as_array(value: Any, dtype: Any, what: str) -> np.ndarray:
    """Convert ``value`` to an array of ``dtype`` or raise a DataError naming it."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{what} could not be converted to {np.dtype(dtype).name}: {exc}; "
            f"pass a numeric array"
        ) from exc


def _is_missing_label(label: Any) -> bool:
    """Whether one raw label counts as missing (None, empty text or NaN)."""
    if label is None:
        return True
    if isinstance(label, (str, np.str_)):
        return label.strip().lower() in ("", "nan")
    if isinstance(label, (float, np.floating)):
        return math.isnan(float(label))
    return False


def _label_kind(y: np.ndarray) -> str:
    """Return ``"int"`` or ``"str"``: the JSON-safe kind of a label array."""
    if y.dtype.kind in "iu":
        return "int"
    if y.dtype.kind == "b":
        return "bool"
    if y.dtype.kind in "US":
        return "str"
    if y.dtype.kind == "f":
        finite = y[np.isfinite(y)]
        if finite.size and not np.all(finite == np.round(finite)):
            return "float"
        return "int"
    kinds = {
        "int"
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        else "str"
        if isinstance(v, (str, np.str_))
        else "other"
        for v in y.tolist()
        if not _is_missing_label(v)
    }
    if len(kinds) == 1:
        return kinds.pop()
    return "mixed" if kinds else "str"


def _check_labels_present(y: np.ndarray, split: str, name: str) -> None:
    """Raise a DataError naming the first missing label of a split."""
    flat = y.reshape(-1)
    for i, label in enumerate(flat.tolist()):
        if _is_missing_label(label):
            raise DataError(
                f"dataset '{name}': label {i} of the {split} split is missing "
                f"({label!r}); every series needs a label: fix or drop that row"
            )


def _json_label(label: Any) -> int | str:
    """Convert one label to a plain ``int`` or ``str``."""
    if isinstance(label, (np.integer, int)) and not isinstance(label, bool):
        return int(label)
    if isinstance(label, (np.floating, float)):
        return int(label)
    return str(label)


def _sorted_labels(labels: Sequence[Any]) -> list[int | str]:
    """Sorted unique labels as plain ints or strs."""
    unique = {_json_label(v) for v in labels}
    return sorted(unique)  # type: ignore[type-var]


@dataclass(eq=False, repr=False)
class SequenceDataset:
    """Train and test splits of padded, masked sequences with their targets.

    Args:
        name (str): Short name of the dataset.
        X_train (np.ndarray): ``(n_train, L, C)`` float32 inputs, zero past each
            series' end and at missing steps.
        y_train (np.ndarray): Classification: ``(n_train,)`` raw labels (str or
            int, as in the file). Regression: ``(n_train,)`` or
            ``(n_train, L, D)`` float32 targets.
        X_test (np.ndarray): ``(n_test, L, C)`` float32 inputs.
        y_test (np.ndarray): Targets of the test split, shaped like ``y_train``.
        mask_train (np.ndarray): ``(n_train, L)`` bool, ``True`` where a real
            observation is.
        mask_test (np.ndarray): ``(n_test, L)`` bool.
        timespans_train (np.ndarray | None): ``(n_train, L)`` float32 elapsed
            time per step, or ``None`` meaning 1.0 everywhere.
        timespans_test (np.ndarray | None): Same for the test split.
        task (str): ``"classification"`` or ``"regression"``.
        summary (str): One line describing the dataset.
        source (str): Provenance or citation line.

    Equality is identity (arrays have no single truth value) and the repr
    shows shapes only.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mask_train: np.ndarray
    mask_test: np.ndarray
    timespans_train: np.ndarray | None = None
    timespans_test: np.ndarray | None = None
    task: str = "classification"
    summary: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        """Bring arrays to their documented dtypes (no checks; see validate)."""
        for split in _SPLITS:
            x = getattr(self, f"X_{split}")
            setattr(self, f"X_{split}", _as_array(x, np.float32, f"X_{split}"))
            mask = np.asarray(getattr(self, f"mask_{split}"))
            if mask.dtype != np.bool_:
                mask = _as_array(mask, np.float64, f"mask_{split}") != 0
            setattr(self, f"mask_{split}", mask)
            y = np.asarray(getattr(self, f"y_{split}"))
            if self.task == "regression":
                y = _as_array(y, np.float32, f"y_{split}")
            setattr(self, f"y_{split}", y)
            spans = getattr(self, f"timespans_{split}")
            if spans is not None:
                spans = _as_array(spans, np.float32, f"timespans_{split}")
                setattr(self, f"timespans_{split}", spans)

    @property
    def n_train(self) -> int:
        """Number of training series."""
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test series."""
        return int(self.X_test.shape[0])

    @property
    def length(self) -> int:
        """Padded length ``L`` shared by both splits."""
        return int(self.X_train.shape[1])

    @property
    def channels(self) -> int:
        """Number of input channels ``C``."""
        return int(self.X_train.shape[2])

    @property
    def lengths_train(self) -> np.ndarray:
        """Length of each training series: last observed step plus one."""
        return _lengths(self.mask_train)

    @property
    def lengths_test(self) -> np.ndarray:
        """Length of each test series: last observed step plus one."""
        return _lengths(self.mask_test)

    @property
    def classes(self) -> list[int | str]:
        """Sorted unique labels of train and test, as plain ints or strs."""
        self._require_classification("classes")
        labels = np.concatenate([self.y_train.reshape(-1), self.y_test.reshape(-1)])
        return _sorted_labels(labels.tolist())

    @property
    def num_classes(self) -> int:
        """Number of classes (classification only)."""
        return len(self.classes)

    def _require_classification(self, what: str) -> None:
        """Raise a DataError when ``what`` is asked of a regression dataset."""
        if self.task != "classification":
            raise DataError(
                f"dataset '{self.name}' is a {self.task} task, so it has no "
                f"{what}; {what} exist only for task='classification'"
            )

    def validate(self) -> SequenceDataset:
        """Check shapes, values and labels; raise a DataError on the first problem.

        Checks that the task is known; that ``X``, ``y``, ``mask`` and
        ``timespans`` agree in shape within and across splits; that ``X`` is
        finite everywhere and 0 where the mask is ``False``; that every series
        has at least one observation; that no label is missing; and, for
        classification, that every test class also occurs in train.

        Returns:
            SequenceDataset: ``self``, so calls can be chained.

        Raises:
            DataError: naming the split, the array and the offending value.
        """
        name = self.name
        if self.task not in TASKS:
            raise DataError(
                f"dataset '{name}': unknown task {self.task!r}; expected one of "
                f"{', '.join(repr(t) for t in TASKS)}"
            )
        for split in _SPLITS:
            self._validate_split(split)
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            raise DataError(
                f"dataset '{name}': X_train has steps and channels "
                f"{self.X_train.shape[1:]} but X_test has {self.X_test.shape[1:]}; "
                f"pad both splits to the same length and give them the same channels"
            )
        if self.n_train == 0:
            raise DataError(
                f"dataset '{name}': the train split is empty; it needs at least "
                f"one series"
            )
        if self.task == "classification":
            self._validate_classes()
        elif self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise DataError(
                f"dataset '{name}': y_train has per-series shape "
                f"{self.y_train.shape[1:]} but y_test has {self.y_test.shape[1:]}; "
                f"both splits need targets of the same shape"
            )
        return self

    def _validate_split(self, split: str) -> None:
        """Check the arrays of one split."""
        name = self.name
        x = self.X_train if split == "train" else self.X_test
        y = self.y_train if split == "train" else self.y_test
        mask = self.mask_train if split == "train" else self.mask_test
        spans = self.timespans_train if split == "train" else self.timespans_test
        if x.ndim != 3:
            raise DataError(
                f"dataset '{name}': X_{split} has shape {x.shape}; expected "
                f"(n_series, length, channels)"
            )
        n, length, _ = x.shape
        if mask.shape != (n, length):
            raise DataError(
                f"dataset '{name}': mask_{split} has shape {mask.shape}; expected "
                f"{(n, length)} to match X_{split} {x.shape}"
            )
        if y.shape[:1] != (n,):
            raise DataError(
                f"dataset '{name}': y_{split} has shape {y.shape}; expected {n} "
                f"targets, one per series of X_{split}"
            )
        bad = ~np.isfinite(x)
        if bad.any():
            i, t, c = (int(v) for v in np.argwhere(bad)[0])
            where = "an observed step" if mask[i, t] else "a masked-out step"
            raise DataError(
                f"dataset '{name}': X_{split}[{i}, {t}, {c}] is {x[i, t, c]} at "
                f"{where}; expected a finite number. Mark missing values with "
                f"mask_{split}=False and set X to 0 there"
            )
        stray = (x != 0) & ~mask[:, :, None]
        if stray.any():
            i, t, c = (int(v) for v in np.argwhere(stray)[0])
            raise DataError(
                f"dataset '{name}': X_{split}[{i}, {t}, {c}] is {x[i, t, c]} but "
                f"mask_{split}[{i}, {t}] is False; padded and missing steps must "
                f"hold 0 (set X_{split}[~mask_{split}] = 0)"
            )
        empty = ~mask.any(axis=1)
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"dataset '{name}': series {i} of the {split} split has no "
                f"observed step; every series needs at least one observation: "
                f"drop that series"
            )
        if spans is not None:
            if spans.shape != (n, length):
                raise DataError(
                    f"dataset '{name}': timespans_{split} has shape {spans.shape}; "
                    f"expected {(n, length)} to match X_{split}"
                )
            bad = ~np.isfinite(spans) | ((spans < 0) & mask)
            if bad.any():
                i, t = (int(v) for v in np.argwhere(bad)[0])
                raise DataError(
                    f"dataset '{name}': timespans_{split}[{i}, {t}] is "
                    f"{spans[i, t]}; expected a finite elapsed time >= 0"
                )
        if self.task == "classification":
            if y.ndim != 1:
                raise DataError(
                    f"dataset '{name}': y_{split} has shape {y.shape}; a "
                    f"classification task needs one label per series, shape ({n},)"
                )
            _check_labels_present(y, split, name)
            kind = _label_kind(y)
            if kind not in ("int", "str"):
                raise DataError(
                    f"dataset '{name}': labels of y_{split} are {kind} values; "
                    f"expected str or int labels (for real-valued targets use "
                    f"task='regression')"
                )
        else:
            if y.ndim == 3 and y.shape[1] != length:
                raise DataError(
                    f"dataset '{name}': y_{split} has shape {y.shape}; per-step "
                    f"targets need shape ({n}, {length}, D) to match X_{split}"
                )
            if y.ndim not in (1, 3):
                raise DataError(
                    f"dataset '{name}': y_{split} has shape {y.shape}; a "
                    f"regression task needs ({n},) or ({n}, {length}, D)"
                )
            observed = y if y.ndim == 1 else y[mask]
            if not np.all(np.isfinite(observed)):
                i = int(np.argwhere(~np.isfinite(observed))[0][0])
                raise DataError(
                    f"dataset '{name}': a regression target of y_{split} is not "
                    f"finite (entry {i} of the observed targets); every target "
                    f"needs a finite value"
                )

    def _validate_classes(self) -> None:
        """Check that train and test labels are of one kind and test ⊆ train."""
        kinds = {_label_kind(self.y_train)}
        if self.n_test:
            kinds.add(_label_kind(self.y_test))
        if len(kinds) > 1:
            raise DataError(
                f"dataset '{self.name}': train labels are {_label_kind(self.y_train)} "
                f"but test labels are {_label_kind(self.y_test)}; both splits "
                f"must use the same kind of label"
            )
        _unseen_test_classes(self.y_train, self.y_test, self.name)

    def __repr__(self) -> str:
        """Name, task and array shapes (the arrays themselves are not shown)."""
        return (
            f"SequenceDataset(name={self.name!r}, task={self.task!r}, "
            f"X_train={self.X_train.shape}, X_test={self.X_test.shape})"
        )

    def describe(self) -> str:
        """One line with the sizes of the dataset.

        Returns:
            str: e.g. ``"gun_point: 50 train / 150 test series, 1 channel, ..."``.
        """
        lengths = np.concatenate([self.lengths_train, self.lengths_test])
        span = (
            f"length {int(lengths.min())}"
            if lengths.min() == lengths.max()
            else f"lengths {int(lengths.min())}-{int(lengths.max())}"
        )
        channel_word = "channel" if self.channels == 1 else "channels"
        head = (
            f"{self.name}: {self.n_train} train / {self.n_test} test series, "
            f"{self.channels} {channel_word}, {span}"
        )
        if self.task == "classification":
            return f"{head}, {self.num_classes} classes"
        return f"{head}, regression"


def _lengths(mask: np.ndarray) -> np.ndarray:
    """Index of the last True step plus one, per row (0 for an empty row)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise DataError(f"a mask has shape {mask.shape}; expected (n_series, length)")
    last = mask.shape[1] - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), last, 0).astype(np.int64)


def _unseen_test_classes(y_train: np.ndarray, y_test: np.ndarray, name: str) -> None:
    """Raise a DataError naming the classes that occur only in the test split."""
    seen = {_json_label(v) for v in np.asarray(y_train).tolist()}
    unseen = _sorted_labels(
        [v for v in np.asarray(y_test).tolist() if _json_label(v) not in seen]
    )
    if unseen:
        listed = ", ".join(repr(c) for c in unseen)
        word = "class" if len(unseen) == 1 else "classes"
        raise DataError(
            f"dataset '{name}': {word} {listed} occur(s) only in the test split; "
            f"a model cannot learn a class it never sees in training: move some "
            f"of its series to train or drop them from test"
        )


def encode_labels(
    y_train: Sequence[Any] | np.ndarray, y_test: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int | str]]:
    """Map raw labels to class indices ``0 .. k-1`` learned from the train split.

    Args:
        y_train (Sequence | np.ndarray): Raw labels of the train split (str or
            int; integral floats count as ints).
        y_test (Sequence | np.ndarray): Raw labels of the test split.

    Returns:
        tuple: ``(int_train, int_test, classes)``: two int64 arrays of indices
        and the sorted list of classes as plain ints or strs (JSON-safe), so
        that ``classes[int_train[i]]`` is the label of train series ``i``.

    Raises:
        DataError: a label is missing, the splits mix kinds of labels, or a
            class occurs only in the test split (it is named).
    """
    train = np.asarray(y_train)
    test = np.asarray(y_test)
    for split, y in (("train", train), ("test", test)):
        if y.ndim != 1:
            raise DataError(
                f"y_{split} has shape {y.shape}; expected a 1-D array of labels"
            )
        _check_labels_present(y, split, "labels")
    kinds = {_label_kind(train)} | ({_label_kind(test)} if test.size else set())
    if not kinds <= {"int", "str"} or len(kinds) > 1:
        raise DataError(
            f"labels are {' and '.join(sorted(kinds))}; expected str or int labels "
            f"of one kind in both splits"
        )
    _unseen_test_classes(train, test, "labels")
    classes = _sorted_labels(train.tolist())
    index = {c: i for i, c in enumerate(classes)}
    int_train = np.array([index[_json_label(v)] for v in train.tolist()], np.int64)
    int_test = np.array([index[_json_label(v)] for v in test.tolist()], np.int64)
    return int_train, int_test, classes


def decode_labels(
    indices: Sequence[int] | np.ndarray, classes: Sequence[int | str]
) -> list[int | str]:
    """Map class indices back to the labels returned by :func:`encode_labels`.

    Args:
        indices (Sequence[int] | np.ndarray): Class indices.
        classes (Sequence[int | str]): The class list from :func:`encode_labels`.

    Returns:
        list: The label of each index.

    Raises:
        DataError: an index is outside ``0 .. len(classes) - 1``.
    """
    idx = np.asarray(indices).reshape(-1)
    if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0):
        raise DataError(
            f"class indices must be non-negative integers; got {idx.tolist()[:5]}"
        )
    if idx.size and idx.max() >= len(classes):
        raise DataError(
            f"class index {int(idx.max())} is out of range for {len(classes)} "
            f"classes; expected 0 .. {len(classes) - 1}"
        )
    return [classes[int(i)] for i in idx]


class Standardizer:
    """Per-channel standardising fitted on observed training steps only.

    ``transform`` maps each channel to ``(x - mean) / std`` and keeps padded
    and missing steps at 0. A channel whose standard deviation is below
    ``eps`` (constant on the training data) is only centred (``std`` 1).

    Args:
        mean (Sequence[float] | None): Per-channel means, if already known.
        std (Sequence[float] | None): Per-channel standard deviations.
        eps (float): Smallest standard deviation treated as non-constant.
            Default: ``1e-8``.
    """

    def __init__(
        self,
        mean: Sequence[float] | np.ndarray | None = None,
        std: Sequence[float] | np.ndarray | None = None,
        eps: float = 1e-8,
    ) -> None:
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise DataError(f"eps is {eps!r}; expected a finite number >= 0")
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        if (mean is None) != (std is None):
            raise DataError(
                "give both mean and std, or neither (then call fit on train data)"
            )
        if mean is not None and std is not None:
            self._set(mean, std)

    def _set(self, mean: Any, std: Any) -> None:
        """Check and store the statistics."""
        m = _as_array(mean, np.float64, "mean").reshape(-1)
        s = _as_array(std, np.float64, "std").reshape(-1)
        if m.shape != s.shape or m.size == 0:
            raise DataError(
                f"mean has {m.size} values and std {s.size}; expected the same "
                f"non-zero number, one per channel"
            )
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s)) and np.all(s > 0)):
            raise DataError(
                f"mean {m.tolist()} / std {s.tolist()}: expected finite means and "
                f"finite standard deviations > 0"
            )
        self.mean, self.std = m, s

    @property
    def fitted(self) -> bool:
        """Whether statistics are available."""
        return self.mean is not None

    @property
    def channels(self) -> int:
        """Number of channels the statistics are for."""
        return 0 if self.mean is None else int(self.mean.size)

    @staticmethod
    def _inputs(
        X: np.ndarray, mask: np.ndarray | None, action: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Check ``X``/``mask`` and return them as float64 / bool arrays."""
        x = _as_array(X, np.float64, "X")
        if x.ndim != 3:
            raise DataError(
                f"cannot {action} X of shape {x.shape}; expected "
                f"(n_series, length, channels)"
            )
        if mask is None:
            m = np.ones(x.shape[:2], dtype=bool)
        else:
            m = np.asarray(mask).astype(bool)
            if m.shape != x.shape[:2]:
                raise DataError(
                    f"cannot {action}: mask has shape {m.shape} but X has "
                    f"{x.shape}; expected a mask of shape {x.shape[:2]}"
                )
        return x, m

    def fit(self, X: np.ndarray, mask: np.ndarray | None = None) -> Standardizer:
        """Compute per-channel mean and std over the observed steps of ``X``.

        Args:
            X (np.ndarray): ``(n, L, C)`` training inputs.
            mask (np.ndarray | None): ``(n, L)`` observed steps; ``None`` means
                every step.

        Returns:
            Standardizer: ``self``.

        Raises:
            DataError: on wrong shapes, no observed step, or non-finite values
                at observed steps.
        """
        x, m = self._inputs(X, mask, "fit")
        values = x[m]
        if values.shape[0] == 0:
            raise DataError(
                "cannot fit a Standardizer: the mask has no observed step; pass "
                "training data with at least one observation"
            )
        if not np.all(np.isfinite(values)):
            raise DataError(
                "cannot fit a Standardizer: X has NaN or inf at observed steps; "
                "mask them out or fix the data"
            )
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        std = np.where((std < self.eps) | (std == 0), 1.0, std)
        self._set(mean, std)
        return self

    def transform(self, X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Standardise ``X``; padded and missing steps stay 0.

        Args:
            X (np.ndarray): ``(n, L, C)`` inputs with ``C`` equal to the fitted
                channels.
            mask (np.ndarray | None): ``(n, L)`` observed steps; ``None`` means
                every step.

        Returns:
            np.ndarray: float32 array of the shape of ``X``.

        Raises:
            DataError: before ``fit``, or when the channels do not match.
        """
        mean, std = self._stats("transform")
        x, m = self._inputs(X, mask, "transform")
        self._check_channels(x)
        out = np.where(m[:, :, None], (x - mean) / std, 0.0)
        return out.astype(np.float32)

    def fit_transform(
        self, X: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Fit on ``X`` and return it standardised.

        Args:
            X (np.ndarray): ``(n, L, C)`` training inputs.
            mask (np.ndarray | None): ``(n, L)`` observed steps.

        Returns:
            np.ndarray: The standardised float32 inputs.
        """
        return self.fit(X, mask).transform(X, mask)

    def inverse_transform(
        self, X: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Undo :meth:`transform`; padded and missing steps stay 0.

        Args:
            X (np.ndarray): ``(n, L, C)`` standardised values.
            mask (np.ndarray | None): ``(n, L)`` observed steps.

        Returns:
            np.ndarray: float32 values in the original units.
        """
        mean, std = self._stats("inverse_transform")
        x, m = self._inputs(X, mask, "inverse_transform")
        self._check_channels(x)
        out = np.where(m[:, :, None], x * std + mean, 0.0)
        return out.astype(np.float32)

    def _stats(self, action: str) -> tuple[np.ndarray, np.ndarray]:
        """Return mean and std, or raise when not fitted."""
        if self.mean is None or self.std is None:
            raise DataError(
                f"cannot {action}: the Standardizer is not fitted; call fit(X_train, "
                f"mask_train) first or build it with from_dict"
            )
        return self.mean, self.std

    def _check_channels(self, x: np.ndarray) -> None:
        """Raise when ``x`` has another number of channels than the statistics."""
        if x.shape[2] != self.channels:
            raise DataError(
                f"X has {x.shape[2]} channels but the Standardizer was fitted on "
                f"{self.channels}; use data with the same channels"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe statistics: ``{"mean": [...], "std": [...], "eps": ...}``.

        Returns:
            dict: Plain lists and floats.
        """
        mean, std = self._stats("to_dict")
        return {"mean": mean.tolist(), "std": std.tolist(), "eps": self.eps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """Rebuild a fitted Standardizer from :meth:`to_dict` output.

        Args:
            data (dict): With keys ``mean`` and ``std`` (lists of floats) and
                optionally ``eps``.

        Returns:
            Standardizer: The fitted standardiser.

        Raises:
            DataError: keys are missing or values are not valid statistics.
        """
        if not isinstance(data, dict) or not {"mean", "std"} <= set(data):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(
                f"Standardizer.from_dict got {got}; expected a dict with keys "
                f"'mean' and 'std' (as written by to_dict)"
            )
        return cls(data["mean"], data["std"], eps=data.get("eps", 1e-8))

    def __repr__(self) -> str:
        """Short description with the number of channels."""
        state = f"{self.channels} channels" if self.fitted else "not fitted"
        return f"Standardizer({state})"
