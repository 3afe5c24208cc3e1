"""Readers for sequence datasets on disk: ``.ts``, ``.tsv``, ``.npz`` and ``.csv``.

:func:`read_dataset` picks the reader from the file's suffix. Every reader
returns a validated :class:`~ncp_core.data.SequenceDataset`:

* Series of different lengths are zero-padded to the longest series of both
  splits, with ``mask`` ``False`` on the padding. Nothing is ever truncated.
* A missing value inside a series (``?``, ``NaN`` or an empty field in a text
  file; ``NaN`` in an ``.npz`` without an explicit mask) sets the mask to
  ``False`` at that step and ``X`` to 0 there, in every channel. ``inf`` is
  never taken for missing: it is an error.
* Text labels that are all integers (``"1"``, ``"-1"``, ``"2.0"``) become an
  int64 array; any other labels stay strings.

Train and test files are paired by name: ``Name_TRAIN.ext`` and
``Name_TEST.ext`` in one folder (either one may be passed; the case of
``TRAIN``/``train`` is kept). A file whose name has no ``_TRAIN``/``_TEST``
part holds all series: 20% of them (rounded, at least one series of every
class with two or more series kept in train) are split off as test with a
stratified permutation seeded with 0, so the split is the same on every
machine.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ncp_core.data.dataset import TASKS, SequenceDataset
from ncp_core.errors import DataError

__all__ = [
    "FORMATS",
    "SPLIT_SEED",
    "TEST_FRACTION",
    "SeriesFile",
    "read_csv",
    "read_dataset",
    "read_npz",
    "read_series",
    "read_ts",
    "read_tsv",
    "split_train_test",
    "write_npz",
]

#: Seed of the stratified permutation used when a file has no test partner.
SPLIT_SEED = 0
#: Fraction of the series split off as test when a file has no test partner.
TEST_FRACTION = 0.2

_MISSING_TOKENS = frozenset({"", "?", "nan"})
_SPLIT_PART = re.compile(r"_(train|test)$", re.IGNORECASE)
_TS_TAGS = {
    "@problemname": "@problemName",
    "@timestamps": "@timeStamps",
    "@missing": "@missing",
    "@univariate": "@univariate",
    "@dimension": "@dimension",
    "@dimensions": "@dimensions",
    "@equallength": "@equalLength",
    "@serieslength": "@seriesLength",
    "@classlabel": "@classLabel",
    "@targetlabel": "@targetLabel",
    "@data": "@data",
}


@dataclass
class _Parsed:
    """The series and targets of one split as read from a text file."""

    where: str
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    task: str = "classification"
    problem_name: str = ""


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _suffix_of(path: Path) -> str:
    """Lower-case format suffix, counting ``.gz`` with the suffix before it."""
    lower = path.name.lower()
    for double in (".ts.gz", ".tsv.gz", ".csv.gz"):
        if lower.endswith(double):
            return double
    return path.suffix.lower()


def _read_text(path: Path) -> str:
    """Read a (possibly gzip-compressed) text file, or raise a DataError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"{path} ends in .gz but is not valid gzip data ({exc}); "
                f"decompress it or drop the .gz suffix"
            ) from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from exc


def _parse_values(tokens: Sequence[str], where: str, what: str) -> np.ndarray:
    """Parse number tokens; missing markers become NaN, anything else is an error.

    Args:
        tokens (Sequence[str]): Stripped text fields.
        where (str): File and line for error messages.
        what (str): Which values these are (e.g. ``"channel 2"``).

    Returns:
        np.ndarray: float64 values, NaN where a value is missing.
    """
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = np.empty(len(tokens), dtype=np.float64)
        for j, token in enumerate(tokens):
            if token.lower() in _MISSING_TOKENS:
                values[j] = np.nan
                continue
            try:
                values[j] = float(token)
            except ValueError:
                raise DataError(
                    f"{where}: value {j + 1} of {what} is {token!r}; expected a "
                    f"number, or '?' / NaN for a missing value"
                ) from None
    infinite = np.isinf(values)
    if infinite.any():
        j = int(np.flatnonzero(infinite)[0])
        raise DataError(
            f"{where}: value {j + 1} of {what} is {tokens[j]!r}; expected a finite "
            f"number (write '?' or NaN for a missing value)"
        )
    return values


def _label_token(token: str, where: str) -> str:
    """Return a stripped class label, or raise when it is missing."""
    label = token.strip()
    if label.lower() in _MISSING_TOKENS:
        raise DataError(
            f"{where}: the label is missing ({token!r}); every series needs a "
            f"label: fix or drop the line"
        )
    return label


def _coerce_labels(tokens: Sequence[str]) -> np.ndarray:
    """Turn text labels into int64 when all are integers, else into strings."""
    unique = sorted(set(tokens))
    as_int: dict[str, int] = {}
    for token in unique:
        try:
            number = float(token)
        except ValueError:
            break
        if not math.isfinite(number) or number != round(number):
            break
        as_int[token] = int(number)
    else:
        if len(set(as_int.values())) == len(unique):
            return np.array([as_int[t] for t in tokens], dtype=np.int64)
    return np.array(list(tokens), dtype=str)


def split_train_test(
    labels: np.ndarray,
    task: str = "classification",
    *,
    fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, stratified train/test split.

    For classification, each class (in sorted order) is permuted with one
    ``numpy.random.default_rng(seed)`` and ``round(fraction * count)`` of its
    series go to test, keeping at least one in train. For regression the
    whole set is permuted and ``round(fraction * n)`` go to test.

    Args:
        labels (np.ndarray): One label or target per series.
        task (str): ``"classification"`` or ``"regression"``.
        fraction (float): Share of series for the test split. Default: 0.2.
        seed (int): Seed of the permutation. Default: 0.

    Returns:
        tuple: Sorted int64 index arrays ``(train_idx, test_idx)``.

    Raises:
        DataError: ``fraction`` is not in (0, 1), or too few series to split.
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction is {fraction!r}; expected a number in (0, 1)")
    labels = np.asarray(labels)
    n = int(labels.shape[0])
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    if task == "classification":
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            k = min(math.floor(fraction * members.size + 0.5), members.size - 1)
            chosen.extend(int(i) for i in members[:k])
    else:
        k = min(math.floor(fraction * n + 0.5), n - 1)
        chosen.extend(int(i) for i in rng.permutation(n)[:k])
    test_idx = np.array(sorted(chosen), dtype=np.int64)
    if test_idx.size == 0:
        raise DataError(
            f"cannot split {n} series into train and test: too few series per "
            f"class; provide a separate test file (Name_TRAIN / Name_TEST)"
        )
    train_idx = np.setdiff1d(np.arange(n, dtype=np.int64), test_idx)
    return train_idx, test_idx


def _find_partner(path: Path, suffix: str) -> tuple[Path, Path | None, str]:
    """Return ``(train_path, test_path or None, base name)`` for a data file."""
    stem = path.name[: len(path.name) - len(suffix)]
    match = _SPLIT_PART.search(stem)
    if match is None:
        return path, None, stem
    word = match.group(1)
    base = stem[: match.start()]
    if word.lower() == "train":
        other_word = (
            "TEST" if word.isupper() else "Test" if word[0].isupper() else "test"
        )
    else:
        other_word = (
            "TRAIN" if word.isupper() else "Train" if word[0].isupper() else "train"
        )
    ending = path.name[len(stem) :]
    candidates = [path.with_name(f"{base}_{other_word}{ending}")]
    if ending.lower().endswith(".gz"):
        candidates.append(path.with_name(f"{base}_{other_word}{ending[:-3]}"))
    else:
        candidates.append(path.with_name(f"{base}_{other_word}{ending}.gz"))
    partner = next((c for c in candidates if c.is_file()), None)
    if partner is None:
        raise DataError(
            f"{path} is the {word.lower()} split but its partner "
            f"{candidates[0].name} is not in {path.parent}; put the "
            f"{other_word.lower()} file next to it, or rename the file without "
            f"'_{word}' to split off {TEST_FRACTION:.0%} as test automatically"
        )
    if word.lower() == "train":
        return path, partner, base
    return partner, path, base


def _trim(series: np.ndarray) -> np.ndarray:
    """Drop trailing steps that are missing in any channel (they are padding)."""
    observed = ~np.isnan(series).any(axis=1)
    if not observed.any():
        return series[:0]
    last = int(np.flatnonzero(observed)[-1])
    return series[: last + 1]


def _pad(series: list[np.ndarray], length: int, channels: int) -> tuple:
    """Stack series into zero-padded ``X`` and ``mask`` arrays."""
    n = len(series)
    x = np.zeros((n, length, channels), dtype=np.float32)
    mask = np.zeros((n, length), dtype=bool)
    for i, s in enumerate(series):
        observed = ~np.isnan(s).any(axis=1)
        x[i, : s.shape[0]] = np.where(observed[:, None], s, 0.0)
        mask[i, : s.shape[0]] = observed
    return x, mask


def _build(
    name: str,
    train: _Parsed,
    test: _Parsed | None,
    *,
    summary: str = "",
    source: str = "",
) -> SequenceDataset:
    """Pad, split if needed, and validate parsed splits into a dataset."""
    if test is not None and test.task != train.task:
        raise DataError(
            f"{train.where} is a {train.task} file but {test.where} is "
            f"{test.task}; both splits must have the same kind of target"
        )
    channels = {s.shape[1] for s in train.series}
    if test is not None:
        channels |= {s.shape[1] for s in test.series}
    if len(channels) > 1:
        where = train.where if test is None else f"{train.where} and {test.where}"
        raise DataError(
            f"{where}: series have {sorted(channels)} channels; every series of "
            f"both splits needs the same number of channels"
        )
    n_channels = channels.pop()
    task = train.task
    train_series = [_trim(s) for s in train.series]
    test_series = [] if test is None else [_trim(s) for s in test.series]
    labels = list(train.labels) + ([] if test is None else list(test.labels))
    if task == "classification":
        y_all = _coerce_labels(labels)
    else:
        y_all = np.array(labels, dtype=np.float32)
    n_train = len(train_series)
    if test is None:
        train_idx, test_idx = split_train_test(y_all, task)
        all_series = train_series
        train_series = [all_series[i] for i in train_idx]
        test_series = [all_series[i] for i in test_idx]
        y_train, y_test = y_all[train_idx], y_all[test_idx]
        note = (
            f"test = {TEST_FRACTION:.0%} split off with a stratified permutation "
            f"(seed {SPLIT_SEED})"
        )
        source = f"{source}; {note}" if source else note
    else:
        y_train, y_test = y_all[:n_train], y_all[n_train:]
    length = max((s.shape[0] for s in train_series + test_series), default=0)
    x_train, mask_train = _pad(train_series, length, n_channels)
    x_test, mask_test = _pad(test_series, length, n_channels)
    dataset = SequenceDataset(
        name=name,
        X_train=x_train,
        y_train=y_train,
        X_test=x_test,
        y_test=y_test,
        mask_train=mask_train,
        mask_test=mask_test,
        task=task,
        summary=summary,
        source=source,
    )
    dataset.validate()
    if not dataset.summary:
        dataset.summary = dataset.describe()
    return dataset


def _read_pair(
    path: Path,
    suffix: str,
    name: str | None,
    parse: Callable[[str, str], _Parsed],
) -> SequenceDataset:
    """Find the partner of a text file, parse both and build the dataset."""
    _require_file(path)
    train_path, test_path, base = _find_partner(path, suffix)
    train = parse(_read_text(train_path), str(train_path))
    test = None if test_path is None else parse(_read_text(test_path), str(test_path))
    source = f"read from {train_path}" + (
        "" if test_path is None else f" and {test_path}"
    )
    return _build(name or base, train, test, source=source)


def _require_file(path: Path) -> None:
    """Raise a DataError unless ``path`` is an existing file."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"no such file: {path} {what}; check the path")


# --------------------------------------------------------------------------
# .ts (sktime / UEA)
# --------------------------------------------------------------------------


def _ts_bool(tag: str, args: list[str], where: str) -> bool:
    """Parse the single true/false argument of a header tag."""
    if len(args) != 1 or args[0].lower() not in ("true", "false"):
        raise DataError(
            f"{where}: {tag} takes one value, true or false; got "
            f"{' '.join(args) or 'nothing'!r}"
        )
    return args[0].lower() == "true"


def _ts_int(tag: str, args: list[str], where: str) -> int:
    """Parse the single positive integer argument of a header tag."""
    if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
        raise DataError(
            f"{where}: {tag} takes one positive integer; got "
            f"{' '.join(args) or 'nothing'!r}"
        )
    return int(args[0])


def _parse_ts(text: str, source: str) -> _Parsed:
    """Parse the text of one sktime/UEA ``.ts`` file.

    Args:
        text (str): The whole file.
        source (str): File name used in error messages.

    Returns:
        _Parsed: The series (NaN where missing) and the raw labels.
    """
    parsed = _Parsed(where=source)
    header: dict[str, Any] = {}
    class_labels: list[str] | None = None
    in_data = False
    n_channels: int | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {lineno}"
        if not in_data:
            if not line.startswith("@"):
                raise DataError(
                    f"{where}: expected a header tag such as @problemName or "
                    f"@data before the series, got {line[:40]!r}"
                )
            parts = line.split()
            key, args = parts[0].lower(), parts[1:]
            tag = _TS_TAGS.get(key)
            if tag is None:
                known = ", ".join(sorted(set(_TS_TAGS.values()), key=str.lower))
                raise DataError(
                    f"{where}: unknown header tag {parts[0]!r}; expected one of {known}"
                )
            if key in header:
                raise DataError(f"{where}: {tag} appears twice; keep one")
            if key == "@problemname":
                parsed.problem_name = " ".join(args)
                header[key] = parsed.problem_name
            elif key == "@classlabel":
                if not args or args[0].lower() not in ("true", "false"):
                    raise DataError(
                        f"{where}: @classLabel takes true followed by the class "
                        f"labels, or false; got {' '.join(args) or 'nothing'!r}"
                    )
                header[key] = args[0].lower() == "true"
                if header[key]:
                    class_labels = args[1:]
                    if not class_labels:
                        raise DataError(
                            f"{where}: @classLabel true lists no labels; expected "
                            f"'@classLabel true' followed by every class label"
                        )
                elif len(args) > 1:
                    raise DataError(
                        f"{where}: @classLabel false takes no labels; got "
                        f"{' '.join(args[1:])!r}"
                    )
            elif key in ("@dimension", "@dimensions", "@serieslength"):
                header[key] = _ts_int(tag, args, where)
            elif key == "@data":
                if args:
                    raise DataError(f"{where}: @data takes no value; got {args!r}")
                header[key] = True
                in_data = True
                n_channels = _ts_start_data(header, parsed, where)
            else:
                header[key] = _ts_bool(tag, args, where)
                if key == "@timestamps" and header[key]:
                    raise DataError(
                        f"{where}: timestamped .ts files (@timeStamps true) are "
                        f"not supported; convert the data to equally spaced "
                        f"values, or to .npz with timespans_train/timespans_test"
                    )
            continue
        series, label = _ts_data_line(line, where, n_channels, parsed.task)
        if n_channels is None:
            n_channels = series.shape[1]
        if header.get("@equallength"):
            expected = header.setdefault("@serieslength", series.shape[0])
            if series.shape[0] != expected:
                raise DataError(
                    f"{where}: the series has {series.shape[0]} values per "
                    f"channel but the header says @equalLength true and the "
                    f"series length is {expected}; fix the line or the header"
                )
        if class_labels is not None and label not in class_labels:
            raise DataError(
                f"{where}: label {label!r} is not among the labels declared by "
                f"@classLabel ({' '.join(class_labels)}); add it there or fix "
                f"the label"
            )
        parsed.series.append(series)
        parsed.labels.append(label)
    if not in_data:
        raise DataError(
            f"{source}: no @data line; expected the header to end with @data "
            f"followed by one series per line"
        )
    if not parsed.series:
        raise DataError(f"{source}: no series after @data; expected one per line")
    return parsed


def _ts_start_data(header: dict[str, Any], parsed: _Parsed, where: str) -> int | None:
    """Check the header at ``@data``; return the declared channel count."""
    if header.get("@classlabel") and header.get("@targetlabel"):
        raise DataError(
            f"{where}: both @classLabel true and @targetLabel true; a file has "
            f"either class labels or regression targets"
        )
    if header.get("@targetlabel"):
        parsed.task = "regression"
    elif not header.get("@classlabel"):
        raise DataError(
            f"{where}: the header declares no labels; ncp needs '@classLabel true "
            f"<labels>' (classification) or '@targetLabel true' (regression) and "
            f"the label as the last ':'-separated field of each series"
        )
    dims = header.get("@dimensions", header.get("@dimension"))
    if header.get("@univariate"):
        if dims not in (None, 1):
            raise DataError(
                f"{where}: @univariate true contradicts @dimensions {dims}; fix "
                f"the header"
            )
        return 1
    return dims


def _ts_data_line(
    line: str, where: str, n_channels: int | None, task: str
) -> tuple[np.ndarray, Any]:
    """Parse one ``.ts`` data line into a ``(length, C)`` array and its label."""
    fields = line.split(":")
    label_token = fields[-1].strip()
    channels = fields[:-1]
    if not channels:
        raise DataError(
            f"{where}: expected the values of each channel, then ':' and the "
            f"label; found no ':'"
        )
    if n_channels is not None and len(channels) != n_channels:
        raise DataError(
            f"{where}: expected {n_channels} channel(s) separated by ':' before "
            f"the label, found {len(channels)}"
        )
    columns = []
    for c, chunk in enumerate(channels):
        tokens = [t.strip() for t in chunk.split(",")]
        if len(tokens) > 1 and tokens[-1] == "":
            tokens.pop()
        values = _parse_values(tokens, where, f"channel {c + 1}")
        if columns and values.size != columns[0].size:
            raise DataError(
                f"{where}: channel {c + 1} has {values.size} values but channel 1 "
                f"has {columns[0].size}; every channel of a series needs the same "
                f"number of values (write '?' for a missing one)"
            )
        columns.append(values)
    if task == "regression":
        try:
            label: Any = float(label_token)
        except ValueError:
            label = math.nan
        if not math.isfinite(label):
            raise DataError(
                f"{where}: regression target {label_token!r} is not a finite number"
            )
    else:
        label = _label_token(label_token, where)
    return np.stack(columns, axis=1), label


def read_ts(path: str | Path, *, name: str | None = None) -> SequenceDataset:
    """Read an sktime/UEA ``.ts`` file (optionally ``.ts.gz``) and its partner.

    Understands the header tags ``@problemName``, ``@timeStamps`` (only
    ``false``), ``@missing``, ``@univariate``, ``@dimensions``,
    ``@equalLength``, ``@seriesLength``, ``@classLabel``, ``@targetLabel`` and
    ``@data``. Each data line holds the channels separated by ``:``, values
    separated by ``,``, and the label last. ``?`` or ``NaN`` marks a missing
    value.

    Args:
        path (str | Path): ``Name_TRAIN.ts`` (its ``Name_TEST.ts`` is read
            too), ``Name_TEST.ts``, or a single file to split 80/20.
        name (str | None): Dataset name. Default: the file name without
            ``_TRAIN``/``_TEST`` and suffix.

    Returns:
        SequenceDataset: The validated dataset.

    Raises:
        DataError: the file is missing or malformed (file and line are named).
    """
    path = Path(path)
    return _read_pair(path, _suffix_of(path), name, _parse_ts)


# --------------------------------------------------------------------------
# .tsv (UCR 2018)
# --------------------------------------------------------------------------


def _parse_tsv(text: str, source: str) -> _Parsed:
    """Parse a UCR ``.tsv`` file: label, then tab-separated values."""
    parsed = _Parsed(where=source)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{source}, line {lineno}"
        fields = [f.strip() for f in raw.split("\t")]
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()
        if len(fields) < 2:
            hint = " (the line has commas: is it a .csv file?)" if "," in raw else ""
            raise DataError(
                f"{where}: expected a label followed by tab-separated values, "
                f"found {len(fields)} field(s){hint}"
            )
        label = _label_token(fields[0], where)
        values = _parse_values(fields[1:], where, "the series")
        parsed.series.append(values[:, None])
        parsed.labels.append(label)
    if not parsed.series:
        raise DataError(f"{source}: the file holds no series")
    return parsed


def read_tsv(path: str | Path, *, name: str | None = None) -> SequenceDataset:
    """Read a UCR-2018 ``.tsv`` file (label first, then values) and its partner.

    Variable-length series in the UCR archive are padded with ``NaN`` at the
    end; those steps become padding. ``NaN`` before a series' last value is a
    missing value.

    Args:
        path (str | Path): ``Name_TRAIN.tsv`` (its ``Name_TEST.tsv`` is read
            too), ``Name_TEST.tsv``, or a single file to split 80/20.
        name (str | None): Dataset name. Default: from the file name.

    Returns:
        SequenceDataset: The validated, univariate dataset.

    Raises:
        DataError: the file is missing or malformed (file and line are named).
    """
    path = Path(path)
    return _read_pair(path, _suffix_of(path), name, _parse_tsv)


# --------------------------------------------------------------------------
# .csv
# --------------------------------------------------------------------------


def _is_number_or_missing(token: str) -> bool:
    """Whether a csv field is a number or a missing-value marker."""
    if token.strip().lower() in _MISSING_TOKENS:
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def _parse_csv(text: str, source: str) -> _Parsed:
    """Parse a ``.csv`` file: one series a row, label first, optional header."""
    parsed = _Parsed(where=source)
    rows = [
        (lineno, row)
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1)
        if any(cell.strip() for cell in row)
    ]
    if rows:
        first = [c.strip() for c in rows[0][1]]
        others_numeric = len(rows) > 1 and all(
            _is_number_or_missing(row[0]) for _, row in rows[1:]
        )
        if not all(_is_number_or_missing(c) for c in first[1:]) or (
            others_numeric and not _is_number_or_missing(first[0])
        ):
            rows = rows[1:]
    for lineno, row in rows:
        where = f"{source}, line {lineno}"
        fields = [c.strip() for c in row]
        while len(fields) > 1 and fields[-1] == "":
            fields.pop()
        if len(fields) < 2:
            raise DataError(
                f"{where}: expected a label followed by comma-separated values, "
                f"found {len(fields)} field(s)"
            )
        label = _label_token(fields[0], where)
        values = _parse_values(fields[1:], where, "the series")
        parsed.series.append(values[:, None])
        parsed.labels.append(label)
    if not parsed.series:
        raise DataError(f"{source}: the file holds no series")
    return parsed


def read_csv(path: str | Path, *, name: str | None = None) -> SequenceDataset:
    """Read a ``.csv`` file with one univariate series a row, label first.

    A first row is taken as a header when a field after the first is not a
    number (missing markers aside), or when its first field is not a number
    while every other row's label is. Empty fields, ``?`` and ``NaN`` are
    missing values; trailing ones are padding.

    A ``Name_TRAIN.csv`` is read with its ``Name_TEST.csv``. A file without
    ``_TRAIN``/``_TEST`` in its name has no test split: 20% of its series are
    split off as test with a stratified permutation seeded with 0 (see
    :func:`split_train_test`), recorded in the dataset's ``source``.

    Args:
        path (str | Path): The csv file.
        name (str | None): Dataset name. Default: from the file name.

    Returns:
        SequenceDataset: The validated, univariate dataset.

    Raises:
        DataError: the file is missing or malformed (file and line are named).
    """
    path = Path(path)
    return _read_pair(path, _suffix_of(path), name, _parse_csv)


# --------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------


def _npz_str(archive: Any, key: str, where: str) -> str | None:
    """A 0-d string entry of an npz archive, or None when absent."""
    if key not in archive.files:
        return None
    value = archive[key]
    if value.ndim != 0 or value.dtype.kind not in "US":
        raise DataError(
            f"{where}: '{key}' has shape {value.shape} and dtype {value.dtype}; "
            f"expected a single string, e.g. np.array('classification')"
        )
    item = value.item()
    return item.decode() if isinstance(item, bytes) else str(item)


def _npz_inputs(
    x: np.ndarray,
    mask: np.ndarray | None,
    spans: np.ndarray | None,
    split: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check one split's inputs from an npz; derive or apply its mask."""
    if x.dtype.kind not in "fiub":
        raise DataError(
            f"{where}: X_{split} has dtype {x.dtype}; expected numbers (float or int)"
        )
    x = x.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise DataError(
            f"{where}: X_{split} has shape {x.shape}; expected (n, L) for "
            f"univariate or (n, L, C) series"
        )
    if mask is None:
        infinite = np.isinf(x)
        if infinite.any():
            i, t, c = (int(v) for v in np.argwhere(infinite)[0])
            raise DataError(
                f"{where}: X_{split}[{i}, {t}, {c}] is {x[i, t, c]}; expected a "
                f"finite number (NaN marks a missing value when no mask_{split} "
                f"is given)"
            )
        mask = ~np.isnan(x).any(axis=2)
    else:
        if mask.shape != x.shape[:2]:
            raise DataError(
                f"{where}: mask_{split} has shape {mask.shape}; expected "
                f"{x.shape[:2]} to match X_{split} {x.shape}"
            )
        mask = mask.astype(bool)
        bad = ~np.isfinite(x) & mask[:, :, None]
        if bad.any():
            i, t, c = (int(v) for v in np.argwhere(bad)[0])
            raise DataError(
                f"{where}: X_{split}[{i}, {t}, {c}] is {x[i, t, c]} but "
                f"mask_{split}[{i}, {t}] is True; an observed value must be "
                f"finite: fix it or set the mask False there"
            )
    x = np.where(mask[:, :, None], x, 0.0)
    if spans is not None:
        if spans.shape != x.shape[:2]:
            raise DataError(
                f"{where}: timespans_{split} has shape {spans.shape}; expected "
                f"{x.shape[:2]} to match X_{split}"
            )
        spans = spans.astype(np.float64)
        spans = np.where(mask | np.isfinite(spans), spans, 0.0)
    return x, mask, spans


def _npz_labels(y: np.ndarray, task: str, split: str, where: str) -> np.ndarray:
    """Check and convert one split's targets from an npz."""
    if task == "regression":
        if y.dtype.kind not in "fiu":
            raise DataError(
                f"{where}: y_{split} has dtype {y.dtype}; regression targets "
                f"must be numbers"
            )
        return y.astype(np.float32)
    if y.ndim != 1:
        raise DataError(
            f"{where}: y_{split} has shape {y.shape}; classification needs one "
            f"label per series"
        )
    if y.dtype.kind == "S":
        return np.char.decode(y, "utf-8").astype(str)
    if y.dtype.kind == "U":
        return y
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise DataError(
                f"{where}: label {i} of y_{split} is {y[i]}; every series needs a label"
            )
        if np.all(y == np.round(y)):
            return y.astype(np.int64)
        raise DataError(
            f"{where}: y_{split} holds non-integer numbers; class labels must be "
            f"str or int. If this is a regression problem, store "
            f"task='regression' in the npz"
        )
    raise DataError(
        f"{where}: y_{split} has dtype {y.dtype}; expected str or int labels"
    )


def _pad_to(array: np.ndarray | None, length: int, fill: Any) -> np.ndarray | None:
    """Pad the step axis (axis 1) of ``array`` to ``length`` with ``fill``."""
    if array is None or array.shape[1] == length:
        return array
    widths = [(0, 0)] * array.ndim
    widths[1] = (0, length - array.shape[1])
    return np.pad(array, widths, constant_values=fill)


def read_npz(path: str | Path, *, name: str | None = None) -> SequenceDataset:
    """Read a dataset saved as ``.npz`` (for instance by :func:`write_npz`).

    The archive holds ``X_train``, ``y_train``, ``X_test`` and ``y_test``, or
    only ``X`` and ``y`` (then 20% are split off as test as for csv). ``X`` is
    ``(n, L)`` or ``(n, L, C)``. Optional entries: ``mask_train``/``mask_test``
    (or ``mask``), ``timespans_train``/``timespans_test`` (or ``timespans``),
    and 0-d strings ``task``, ``name``, ``summary`` and ``source``. Without a
    mask, ``NaN`` marks a missing value; with a mask, a non-finite value where
    the mask is ``True`` is an error. Splits of different lengths are padded
    to the longer one.

    Args:
        path (str | Path): The ``.npz`` file.
        name (str | None): Dataset name. Default: the archive's ``name``, else
            the file name.

    Returns:
        SequenceDataset: The validated dataset.

    Raises:
        DataError: the file is missing, not an npz, or its arrays do not fit.
    """
    path = Path(path)
    _require_file(path)
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"{where} is not a readable .npz archive ({exc}); write it with "
            f"numpy.savez or write_npz"
        ) from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"{where} holds a single array, not an .npz archive; save the splits "
            f"with numpy.savez(path, X_train=..., y_train=..., X_test=..., "
            f"y_test=...)"
        )
    with archive:
        try:
            contents = {key: archive[key] for key in archive.files}
        except ValueError as exc:
            raise DataError(
                f"{where}: {exc}; store labels as str or int arrays, not objects"
            ) from exc
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{where}: a stored array is damaged ({exc})") from exc
        task = _npz_str(archive, "task", where) or "classification"
        stored_name = _npz_str(archive, "name", where)
        summary = _npz_str(archive, "summary", where) or ""
        source = _npz_str(archive, "source", where) or f"read from {path}"
    if task not in TASKS:
        raise DataError(
            f"{where}: task is {task!r}; expected one of "
            f"{', '.join(repr(t) for t in TASKS)}"
        )
    split_keys = {"X_train", "y_train", "X_test", "y_test"}
    if split_keys <= contents.keys():
        arrays = {
            split: (
                contents[f"X_{split}"],
                contents[f"y_{split}"],
                contents.get(f"mask_{split}"),
                contents.get(f"timespans_{split}"),
            )
            for split in ("train", "test")
        }
    elif {"X", "y"} <= contents.keys():
        arrays = _npz_split_single(contents, task, where)
        source = f"{source}; test = {TEST_FRACTION:.0%} split off (seed {SPLIT_SEED})"
    else:
        raise DataError(
            f"{where} holds {sorted(contents)}; expected X_train, y_train, X_test "
            f"and y_test (or X and y to split automatically)"
        )
    out: dict[str, Any] = {}
    for split, (x, y, mask, spans) in arrays.items():
        x, mask, spans = _npz_inputs(x, mask, spans, split, where)
        out[f"X_{split}"], out[f"mask_{split}"] = x, mask
        out[f"timespans_{split}"] = spans
        out[f"y_{split}"] = _npz_labels(y, task, split, where)
    length = max(out["X_train"].shape[1], out["X_test"].shape[1])
    for split in ("train", "test"):
        out[f"X_{split}"] = _pad_to(out[f"X_{split}"], length, 0.0)
        out[f"mask_{split}"] = _pad_to(out[f"mask_{split}"], length, False)
        out[f"timespans_{split}"] = _pad_to(out[f"timespans_{split}"], length, 0.0)
        y = out[f"y_{split}"]
        if task == "regression" and y.ndim == 3:
            out[f"y_{split}"] = _pad_to(y, length, 0.0)
    if (out["timespans_train"] is None) != (out["timespans_test"] is None):
        raise DataError(
            f"{where}: timespans are given for one split only; store both "
            f"timespans_train and timespans_test, or neither"
        )
    base = _find_base(path)
    dataset = SequenceDataset(
        name=name or stored_name or base,
        task=task,
        summary=summary,
        source=source,
        **out,
    )
    dataset.validate()
    if not dataset.summary:
        dataset.summary = dataset.describe()
    return dataset


def _find_base(path: Path) -> str:
    """File name without suffix and without a trailing ``_TRAIN``/``_TEST``."""
    stem = path.name[: len(path.name) - len(_suffix_of(path))]
    return _SPLIT_PART.sub("", stem) or stem


def _npz_split_single(
    contents: dict[str, np.ndarray], task: str, where: str
) -> dict[str, tuple]:
    """Split the ``X``/``y`` arrays of an npz 80/20 (stratified, seed 0)."""
    x, y = contents["X"], contents["y"]
    if x.shape[:1] != y.shape[:1]:
        raise DataError(
            f"{where}: X has {x.shape[0]} series but y has {y.shape[0]} targets; "
            f"expected one target per series"
        )
    labels = _npz_labels(y, task, "all", where) if task == "classification" else y
    train_idx, test_idx = split_train_test(labels, task)
    mask, spans = contents.get("mask"), contents.get("timespans")
    return {
        split: (
            x[idx],
            y[idx],
            None if mask is None else mask[idx],
            None if spans is None else spans[idx],
        )
        for split, idx in (("train", train_idx), ("test", test_idx))
    }


def write_npz(dataset: SequenceDataset, path: str | Path) -> Path:
    """Save a dataset as a compressed ``.npz`` that :func:`read_npz` reads back.

    Args:
        dataset (SequenceDataset): The dataset; it is validated first.
        path (str | Path): Where to write; ``.npz`` is appended if missing.

    Returns:
        Path: The file written.

    Raises:
        DataError: the dataset is invalid or the file cannot be written.
    """
    dataset.validate()
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {
        "name": np.array(dataset.name),
        "task": np.array(dataset.task),
        "summary": np.array(dataset.summary),
        "source": np.array(dataset.source),
    }
    for split in ("train", "test"):
        arrays[f"X_{split}"] = getattr(dataset, f"X_{split}")
        y = np.asarray(getattr(dataset, f"y_{split}"))
        arrays[f"y_{split}"] = y.astype(str) if y.dtype.kind == "O" else y
        arrays[f"mask_{split}"] = getattr(dataset, f"mask_{split}")
        spans = getattr(dataset, f"timespans_{split}")
        if spans is not None:
            arrays[f"timespans_{split}"] = spans
    try:
        with path.open("wb") as handle:
            np.savez_compressed(handle, **arrays)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

_READERS: dict[str, Callable[..., SequenceDataset]] = {
    ".ts": read_ts,
    ".ts.gz": read_ts,
    ".tsv": read_tsv,
    ".tsv.gz": read_tsv,
    ".csv": read_csv,
    ".csv.gz": read_csv,
    ".npz": read_npz,
}

#: Suffixes :func:`read_dataset` understands.
FORMATS: tuple[str, ...] = tuple(_READERS)


def read_dataset(path: str | Path, *, name: str | None = None) -> SequenceDataset:
    """Read a dataset file, choosing the reader by its suffix.

    ``.ts`` (sktime/UEA), ``.tsv`` (UCR 2018), ``.csv`` (label first) and
    ``.npz``; the text formats may be gzip-compressed (``.ts.gz`` ...). See
    :func:`read_ts`, :func:`read_tsv`, :func:`read_csv` and :func:`read_npz`.

    Args:
        path (str | Path): The file (for split files, either the ``_TRAIN`` or
            the ``_TEST`` one).
        name (str | None): Dataset name. Default: from the file.

    Returns:
        SequenceDataset: The validated dataset.

    Raises:
        DataError: unknown suffix, missing file, or malformed content.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    reader = _READERS.get(suffix)
    if reader is None:
        shown = suffix or "(no suffix)"
        raise DataError(
            f"unknown format '{shown}' of {path}: expected .ts, .tsv, .npz or "
            f".csv (text formats may end in .gz)"
        )
    _require_file(path)
    return reader(path, name=name)


@dataclass
class SeriesFile:
    """The series of one text file, in file order, with no split applied."""

    X: np.ndarray
    """``(n, L, C)`` float32, zero-padded past each series' end."""
    mask: np.ndarray
    """``(n, L)`` bool, True where a real observation is."""
    labels: np.ndarray
    """The label or target of each series, as in the file."""
    task: str


_PARSERS: dict[str, Callable[[str, str], _Parsed]] = {
    ".ts": _parse_ts,
    ".tsv": _parse_tsv,
    ".csv": _parse_csv,
}


def read_series(path: str | Path) -> SeriesFile:
    """Read every series of one ``.ts``, ``.tsv`` or ``.csv`` file, in order.

    Unlike :func:`read_dataset`, no partner file is looked for and nothing is
    split off: this is what ``predict`` and ``eval`` need for a file of new
    series, such as a ``Name_TEST.ts`` on its own.

    Raises:
        DataError: unknown suffix, missing file, or malformed content.
    """
    path = Path(path)
    suffix = _suffix_of(path)
    parse = _PARSERS.get(suffix.removesuffix(".gz"))
    if parse is None:
        raise DataError(
            f"unknown format '{suffix or '(no suffix)'}' of {path}: expected a "
            ".ts, .tsv or .csv file (text formats may end in .gz)"
        )
    _require_file(path)
    parsed = parse(_read_text(path), str(path))
    if not parsed.series:
        raise DataError(f"{path} holds no series")
    channels = {s.shape[1] for s in parsed.series}
    if len(channels) > 1:
        raise DataError(
            f"{path}: series have {sorted(channels)} channels; every series needs "
            "the same number of channels"
        )
    series = [_trim(s) for s in parsed.series]
    length = max(s.shape[0] for s in series)
    x, mask = _pad(series, length, channels.pop())
    if parsed.task == "classification":
        labels = _coerce_labels(list(parsed.labels))
    else:
        labels = np.asarray(parsed.labels, dtype=np.float32)
    return SeriesFile(X=x, mask=mask, labels=labels, task=parsed.task)
