"""Train wired LTC and CfC models on sequence datasets, and use saved runs.

The public API behind ``ncp train``, ``ncp eval`` and ``ncp predict``::

    import ncp.train

    run = ncp.train.fit("japanese_vowels", wiring="auto_ncp", cell="cfc",
                        out="runs/jv")
    run.metrics["accuracy"]               # test accuracy of the best model
    same = ncp.train.load_run("runs/jv")
    ncp.train.predict(same, X).labels     # X: (n, L, C) raw inputs

The model is a :class:`SequenceModel`: the recurrent network (its outputs are
the wiring's ``M`` motor neurons) followed by a linear head to ``K`` class
logits or ``D`` regression targets. For sequence-to-label tasks the readout
is taken at each series' last observed step; the mask is passed to the
network, so padding never enters the state and nothing is truncated.

The loop is data parallel (:mod:`ncp_core.distributed`). Started with
``mlx.launch`` or ``mpirun`` (or given ``distributed=True``), every process
takes its contiguous shard of each global batch, the gradients are combined
with ``mx.distributed`` weighted by each shard's share of the batch, and
validation and test metrics are summed over the processes. The order of the
samples depends only on ``(seed, epoch)``, so the number of processes changes
the result only through the order of floating-point sums. Only rank 0 writes
files. With one process the shard is the whole batch and every collective is
the identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ncp_core import __version__
from ncp_core.data import SequenceDataset, Standardizer, encode_labels
from ncp_core.distributed import (
    DataParallel,
    init_from_env,
    metrics_from_statistics,
    score_statistics,
)
from ncp_core.errors import CheckpointError, DataError, NCPError, WiringError
from ncp_core.metrics import classification_metrics, regression_metrics
from ncp_core.runs import (
    FORMAT_VERSION,
    MODEL_FILE,
    PLOT_FILES,
    RunFolder,
    sha256_file,
)
from ncp_core.training import uses_native
from ncp_core.wiring import Wiring

__all__ = [
    "CELLS",
    "DEFAULT_DATASET",
    "DEFAULT_UNITS",
    "DEFAULT_WIRING",
    "Callback",
    "Prediction",
    "Run",
    "SequenceModel",
    "TrainingConfig",
    "evaluate",
    "fit",
    "load_run",
    "predict",
    "resume",
]

DEFAULT_DATASET = "japanese_vowels"
"""Dataset of a bare ``ncp train``."""

DEFAULT_WIRING = "auto_ncp"
"""Wiring of a bare ``ncp train``."""

DEFAULT_UNITS = 64
"""Neurons of a wiring whose ``units`` the user did not give."""

CELLS = ("cfc", "ltc")
SCHEDULES = ("cosine", "constant")
MONITORS = ("val_loss", "val_accuracy")

COMPILE_MIN_STEPS = 100
"""Optimiser steps from which ``compile="auto"`` compiles the training step.

Tracing an unrolled recurrence costs seconds (more for long series and for
LTC's ODE unfolds); a compiled step is about twice as fast, so short trial
runs are quicker without it.
"""

_OUTPUT_PARAMETERS = ("output_size", "output_dim", "motor_neurons", "output_neurons")
"""Constructor parameters through which wirings take their number of outputs."""


# -- configuration -----------------------------------------------------------


@dataclasses.dataclass
class TrainingConfig:
    """Hyper-parameters of a run, as stored in ``config.json``.

    Args:
        epochs (int): Most epochs to train. Default: ``80``.
        batch_size (int): Series per global batch. Default: ``32``.
        lr (float): Adam learning rate. Default: ``0.002``.
        seed (int): Seeds the model's initial weights, the validation split,
            ``limit_train`` and the order of every epoch. Default: ``0``.
        val_fraction (float): Share of the training series held out,
            stratified by class, for early stopping and model selection.
            ``0`` trains on everything and keeps the last epoch.
            Default: ``0.15``.
        patience (int | None): Stop after this many epochs without a better
            monitored value; ``None`` never stops early. Default: ``40``.
        clip_norm (float | None): Clip the global gradient norm to this.
            Default: ``1.0``.
        weight_decay (float): Decoupled weight decay (AdamW). Default: ``0``.
        schedule (str): ``"cosine"`` decays the learning rate from ``lr`` to
            ``lr / 100`` over ``epochs`` (``lr_t = lr_end + (lr - lr_end)
            (1 + cos(π t / T)) / 2`` per step); ``"constant"`` keeps it.
            Default: ``"cosine"``.
        monitor (str): What selects the best epoch and drives early stopping:
            ``"val_loss"`` (lower is better) or, for classification,
            ``"val_accuracy"`` (higher is better, ties broken by the lower
            loss). Default: ``"val_loss"``.
        input_noise (float): Standard deviation of Gaussian noise added to
            the standardised inputs of each training batch (observed steps
            only; drawn from ``(seed, epoch)``). Default: ``0.4``.
        limit_train (int | None): Keep only this many training series
            (stratified, seeded), for quick trials. Default: ``None``.
    """

    epochs: int = 80
    batch_size: int = 32
    lr: float = 0.002
    seed: int = 0
    val_fraction: float = 0.15
    patience: int | None = 40
    clip_norm: float | None = 1.0
    weight_decay: float = 0.0
    limit_train: int | None = None
    schedule: str = "cosine"
    monitor: str = "val_loss"
    input_noise: float = 0.4

    def check(self) -> TrainingConfig:
        """Raise ValueError naming the first bad hyper-parameter."""
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)) or (
            self.lr <= 0
        ):
            raise DataError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise DataError(f"seed must be an integer, got {self.seed!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(
                f"val_fraction must be in [0, 1), got {self.val_fraction!r}"
            )
        if self.patience is not None:
            _positive_int("patience", self.patience)
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise DataError(f"clip_norm must be positive, got {self.clip_norm!r}")
        if self.limit_train is not None:
            _positive_int("limit_train", self.limit_train)
        if not (isinstance(self.input_noise, (int, float)) and self.input_noise >= 0):
            raise DataError(
                f"input_noise must be a number >= 0, got {self.input_noise!r}"
            )
        if self.schedule not in SCHEDULES:
            raise DataError(
                f"unknown schedule {self.schedule!r}; expected one of "
                f"{', '.join(SCHEDULES)}"
            )
        if self.monitor not in MONITORS:
            raise DataError(
                f"unknown monitor {self.monitor!r}; expected one of "
                f"{', '.join(MONITORS)}"
            )
        return self


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{name} must be a positive integer, got {value!r}")


# -- the model ---------------------------------------------------------------


class SequenceModel(nn.Module):
    """A wired recurrent network followed by a linear head.

    For input ``x`` of shape ``BLC`` the network gives ``BLM`` motor-neuron
    outputs; the head maps them to ``BLK``. Sequence-to-label models then keep
    the step ``t_b = max{t : mask[b, t]}`` of each series: ``BK``.

    Args:
        rnn (nn.Module): An :class:`ncp_core.CfC` or :class:`ncp_core.LTC`
            built with ``return_sequences=True``.
        motor_size (int): ``M``, the network's output size.
        outputs (int): ``K`` classes or ``D`` regression targets.
        per_step (bool): Return every step (sequence-to-sequence) instead of
            the last observed one. Default: ``False``.
    """

    def __init__(
        self,
        rnn: nn.Module,
        motor_size: int,
        outputs: int,
        per_step: bool = False,
    ) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(motor_size, outputs)
        self._per_step = per_step

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | None = None,
        timespans: mx.array | None = None,
    ) -> mx.array:
        motor, _ = self.rnn(x, timespans=timespans, mask=mask)
        y = self.head(motor)
        if self._per_step:
            return y
        if mask is None:
            return y[:, -1]
        steps = mx.arange(x.shape[1])
        last = mx.max(mx.where(mask, steps[None, :], 0), axis=1)
        return y[mx.arange(x.shape[0]), last]


def _build_rnn(
    cell: str, input_size: int, wiring: Wiring, mode: str, cell_params: Mapping
) -> nn.Module:
    from ncp_core.rnn import LTC, CfC

    params = dict(cell_params)
    try:
        if cell == "cfc":
            return CfC(input_size, wiring, return_sequences=True, mode=mode, **params)
        if mode != "default":
            raise WiringError(
                f"--mode {mode!r} is a CfC option; the LTC cell has no modes"
            )
        return LTC(input_size, wiring, return_sequences=True, **params)
    except TypeError as error:
        raise WiringError(f"cell {cell!r}: {error}") from None


def _build_model(
    model_spec: Mapping[str, Any], wiring: Wiring, input_size: int
) -> SequenceModel:
    rnn = _build_rnn(
        model_spec["cell"],
        input_size,
        wiring,
        model_spec.get("mode", "default"),
        model_spec.get("cell_params", {}),
    )
    return SequenceModel(
        rnn,
        int(rnn.output_size),
        int(model_spec["outputs"]),
        per_step=bool(model_spec.get("per_step", False)),
    )


def _flat_parameters(model: nn.Module) -> dict[str, mx.array]:
    return dict(tree_flatten(model.parameters()))


def _load_parameters(model: nn.Module, weights: Mapping[str, mx.array], what: str):
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as error:
        raise CheckpointError(
            f"{what} do not fit the model described by config.json ({error}); "
            "the file belongs to another run or is damaged"
        ) from None
    mx.eval(model.parameters())


# -- data --------------------------------------------------------------------


@dataclasses.dataclass
class _Split:
    """One split ready for the model: standardised inputs and encoded targets."""

    X: np.ndarray
    mask: np.ndarray
    timespans: np.ndarray | None
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])

    def take(self, index: np.ndarray) -> _Split:
        return _Split(
            self.X[index],
            self.mask[index],
            None if self.timespans is None else self.timespans[index],
            self.y[index],
        )


def _resolve_data(
    data: SequenceDataset | str | Path,
) -> tuple[SequenceDataset, dict[str, Any]]:
    """The dataset and how to find it again (for ``config.json``)."""
    if isinstance(data, SequenceDataset):
        dataset = data.validate()
        return dataset, {"name": dataset.name, "kind": "memory", "source": None}
    from ncp_core.data.readers import FORMATS
    from ncp_core.plugins import load_dataset

    text = str(data)
    path = Path(text)
    if not path.exists() and (
        isinstance(data, Path)
        or any(text.lower().endswith(suffix) for suffix in FORMATS)
        or any(sep in text for sep in ("/", "\\"))
    ):
        raise DataError(
            f"no such file: {text} does not exist; check the path, or give a "
            "registered dataset name (ncp datasets lists them)"
        )
    if path.is_dir():
        # A folder is never a data file: a run folder named like a dataset
        # (--out basic_motions) must not hide the registered dataset.
        dataset = _registered_dataset(text)
        dataset.validate()
        return dataset, {"name": dataset.name, "kind": "registered", "source": text}
    dataset = load_dataset(text)
    dataset.validate()
    if path.exists():
        return dataset, {
            "name": dataset.name,
            "kind": "file",
            "source": str(path.resolve()),
        }
    return dataset, {"name": dataset.name, "kind": "registered", "source": text}


def _registered_dataset(name: str) -> SequenceDataset:
    """Load the dataset registered as ``name`` (``plugin:name`` allowed)."""
    from ncp_core.plugins import list_datasets

    plugin, _, bare = name.rpartition(":")
    infos = [
        info
        for info in list_datasets()
        if info.name == bare and (not plugin or info.plugin == plugin)
    ]
    if not infos:
        raise DataError(
            f"{name} is a folder, not a data file, and no dataset is registered "
            "under that name; give a .ts, .tsv, .npz or .csv file"
        )
    infos.sort(key=lambda info: (not info.builtin, info.status != "ok"))
    dataset = infos[0].loader()
    if not isinstance(dataset, SequenceDataset):
        raise DataError(
            f"dataset {name!r}: its loader returned {type(dataset).__name__}, "
            "expected a SequenceDataset"
        )
    return dataset


def _fingerprint(dataset: SequenceDataset) -> str:
    """SHA-256 over the training arrays, to refuse resuming on other data."""
    digest = hashlib.sha256()
    for array in (dataset.X_train, dataset.mask_train, dataset.y_train):
        array = np.ascontiguousarray(array)
        digest.update(str((array.dtype.str, array.shape)).encode())
        digest.update(
            array.astype(str).tobytes() if array.dtype.kind in "OU" else array.tobytes()
        )
    return digest.hexdigest()


def _stratified_take(
    labels: np.ndarray | None, n: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices of ``count`` of ``n`` series, each class in proportion.

    Every class keeps ``floor(share)`` series plus one for the classes with
    the largest remainders (ties broken by the seeded permutation), so the
    draw is exact, stratified and reproducible.
    """
    if count >= n:
        return np.arange(n)
    if labels is None:
        return np.sort(rng.permutation(n)[:count])
    classes, inverse = np.unique(labels, return_inverse=True)
    sizes = np.bincount(inverse, minlength=classes.size)
    share = sizes * (count / n)
    quota = np.floor(share).astype(np.int64)
    remainder = share - quota
    extra = count - int(quota.sum())
    order = np.lexsort((rng.permutation(classes.size), -remainder))
    quota[order[:extra]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(inverse == k))[: quota[k]]
        for k in range(classes.size)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _validation_split(
    labels: np.ndarray | None, n: int, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: a seeded, stratified hold-out of ``fraction``.

    A class with a single series stays in training.
    """
    if fraction <= 0 or n < 2:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    if labels is None:
        k = min(max(round(fraction * n), 1), n - 1)
        val = np.sort(rng.permutation(n)[:k])
    else:
        picked = []
        for cls in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == cls))
            k = min(round(fraction * members.size), members.size - 1)
            picked.append(members[:k])
        val = np.sort(np.concatenate(picked)).astype(np.int64)
    train = np.setdiff1d(np.arange(n), val)
    return train, val


class _TargetScaler:
    """Per-target standardising of regression targets (fitted on train)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    @classmethod
    def fit(cls, y: np.ndarray, mask: np.ndarray | None) -> _TargetScaler:
        values = y[mask] if mask is not None else y
        values = values.reshape(-1, y.shape[-1]).astype(np.float64)
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def transform(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.mean) / self.std).astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return (y * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _TargetScaler:
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]))


def _regression_targets(y: np.ndarray, length: int) -> tuple[np.ndarray, bool]:
    """Targets as ``(n, D)`` or ``(n, L, D)`` float32, and whether per step."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        return y[:, None], False
    if y.ndim == 2:
        return y, False
    if y.ndim == 3 and y.shape[1] == length:
        return y, True
    raise DataError(
        f"regression targets have shape {y.shape}; expected (n,), (n, D) or "
        f"(n, {length}, D)"
    )


@dataclasses.dataclass
class _Prepared:
    """Everything derived from a dataset for one run."""

    task: str
    train: _Split
    val: _Split
    test: _Split
    classes: list[Any] | None
    standardizer: Standardizer
    target_scaler: _TargetScaler | None
    outputs: int
    per_step: bool


def _prepare(dataset: SequenceDataset, training: TrainingConfig) -> _Prepared:
    """Encode, subsample, split off validation and standardise, all seeded."""
    task = dataset.task
    seed = training.seed
    classes: list[Any] | None = None
    if task == "classification":
        y_train, y_test, classes = encode_labels(dataset.y_train, dataset.y_test)
        if len(classes) < 2:
            raise DataError(
                f"dataset '{dataset.name}' has a single class {classes!r} in its "
                "train split; classification needs at least two"
            )
        outputs, per_step = len(classes), False
        strata: np.ndarray | None = y_train
    else:
        y_train, per_step = _regression_targets(dataset.y_train, dataset.length)
        y_test, _ = _regression_targets(dataset.y_test, dataset.length)
        outputs = int(y_train.shape[-1])
        strata = None

    full = _Split(dataset.X_train, dataset.mask_train, dataset.timespans_train, y_train)
    if training.limit_train is not None and training.limit_train < len(full):
        rng = np.random.default_rng([seed, 2])
        keep = _stratified_take(strata, len(full), training.limit_train, rng)
        full = full.take(keep)
        strata = None if strata is None else strata[keep]

    train_idx, val_idx = _validation_split(
        strata, len(full), training.val_fraction, seed
    )
    train, val = full.take(train_idx), full.take(val_idx)
    if task == "classification" and len(train):
        missing = sorted(set(range(len(classes or []))) - set(train.y.tolist()))
        if missing and classes is not None:
            names = ", ".join(repr(classes[i]) for i in missing)
            raise DataError(
                f"after --limit-train {training.limit_train} no training series "
                f"of class {names} is left; raise --limit-train"
            )
    test = _Split(dataset.X_test, dataset.mask_test, dataset.timespans_test, y_test)

    standardizer = Standardizer().fit(train.X, train.mask)
    for split in (train, val, test):
        split.X = standardizer.transform(split.X, split.mask)
    target_scaler = None
    if task == "regression":
        target_scaler = _TargetScaler.fit(train.y, train.mask if per_step else None)
        for split in (train, val, test):
            split.y = target_scaler.transform(split.y)
    return _Prepared(
        task, train, val, test, classes, standardizer, target_scaler, outputs, per_step
    )


# -- wiring ------------------------------------------------------------------


def _accepted_parameters(name: str) -> set[str]:
    """Constructor parameters of the wiring a name resolves to (empty if unknown)."""
    from ncp_core.plugins import list_wirings

    plugin, _, bare = name.rpartition(":")
    infos = [
        info
        for info in list_wirings()
        if info.name == bare and (not plugin or info.plugin == plugin)
    ]
    # Built-ins win a name clash, as in get_wiring.
    infos.sort(key=lambda info: (not info.builtin, info.status != "ok"))
    return {p.name for p in infos[0].parameters} if infos else set()


def _make_wiring(
    wiring: str | Wiring,
    params: Mapping[str, Any],
    outputs: int,
    input_size: int,
) -> Wiring:
    """The wiring to train, with sizes filled in where the user gave none.

    A registered wiring whose constructor takes ``units`` gets
    :data:`DEFAULT_UNITS` when it is not given, and its output parameter
    (``output_size``, ``output_dim``, ``motor_neurons`` or ``output_neurons``)
    gets one motor
    neuron per class or target when not given.
    """
    if isinstance(wiring, Wiring):
        if params:
            raise WiringError(
                "wiring parameters are given but the wiring is already an object; "
                "pass the parameters to its constructor instead"
            )
        return wiring.build(input_size) if not wiring.is_built() else wiring
    from ncp_core.plugins import get_wiring

    filled = dict(params)
    accepted = _accepted_parameters(wiring)
    if "units" in accepted and "units" not in filled:
        filled["units"] = DEFAULT_UNITS
    chosen = None
    for name in _OUTPUT_PARAMETERS:
        if name in accepted:
            if name not in filled:
                filled[name] = outputs
                chosen = name
            break
    try:
        built = get_wiring(wiring, **filled)
    except WiringError as error:
        if chosen is None or chosen not in str(error):
            raise
        raise WiringError(
            f"{error} ({chosen} was set to {outputs}, one motor neuron per "
            f"{'class' if outputs > 1 else 'target'}; give -p {chosen}=N to choose)"
        ) from None
    return built.build(input_size)


# -- callbacks ---------------------------------------------------------------


class Callback:
    """Hooks into the training loop; subclass and override what you need.

    Every method gets the :class:`Run` being trained; ``run.model``,
    ``run.optimizer``, ``run.wiring`` and ``run.epoch`` are live. Setting
    ``run.stop_training = True`` ends training after the current epoch. A
    callback that changes the model's structure (an adaptive wiring) calls
    ``run.model_changed()`` so the compiled step is traced again.
    """

    def on_train_begin(self, run: Run) -> None:
        """Before the first epoch (also after a resume)."""

    def on_epoch_begin(self, run: Run, epoch: int) -> None:
        """Before epoch ``epoch`` (counted from 1)."""

    def on_step_end(self, run: Run, step: int, logs: Mapping[str, Any]) -> None:
        """After each optimiser step.

        ``logs``: ``epoch``, ``step`` and ``steps`` of this epoch, ``loss``
        of the batch, running ``mean_loss`` and (classification) running
        ``accuracy``, ``samples`` seen this epoch, ``seconds`` since the epoch
        began.
        """

    def on_epoch_end(self, run: Run, epoch: int, logs: Mapping[str, Any]) -> None:
        """After validation of ``epoch``, before its checkpoint is written.

        ``logs`` is the row written to ``metrics.jsonl``.
        """

    def on_checkpoint(self, run: Run, epoch: int, path: Path) -> None:
        """After the checkpoint of ``epoch`` is complete on disk (writer only)."""

    def on_train_end(self, run: Run, logs: Mapping[str, Any]) -> None:
        """After the test evaluation; ``logs`` is the summary."""


# -- runs --------------------------------------------------------------------


@dataclasses.dataclass
class Prediction:
    """What :func:`predict` returns.

    Attributes:
        labels: Classification: the predicted label of each series (as in the
            training data). ``None`` for regression.
        indices: ``(n,)`` predicted class ids, or ``None``.
        probabilities: ``(n, K)`` softmax probabilities, or ``None``.
        values: Regression: ``(n, D)`` or ``(n, L, D)`` predictions in the
            units of the training targets, or ``None``.
        classes: The ``K`` class labels, or ``None``.
        mask: ``(n, L)`` observed steps of the inputs.
    """

    labels: list[Any] | None = None
    indices: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    classes: list[Any] | None = None
    mask: np.ndarray | None = None


class Run:
    """A trained (or training) model with everything needed to use it.

    Attributes:
        model: The :class:`SequenceModel` (best weights once training ended).
        wiring: Its wiring.
        config: The content of ``config.json``.
        history: One dict per finished epoch (the ``metrics.jsonl`` rows).
        metrics: Test metrics of the best model (empty until evaluated).
        path: The run folder, or ``None`` for a run kept in memory.
        classes: Class labels, ``None`` for regression.
        task: ``"classification"`` or ``"regression"``.
        best_epoch: Epoch whose weights the model holds.
        summary: The content of ``summary.json`` once training ended.
    """

    def __init__(
        self,
        model: SequenceModel,
        wiring: Wiring,
        config: dict[str, Any],
        path: Path | None,
        standardizer: Standardizer,
        target_scaler: _TargetScaler | None,
    ) -> None:
        self.model = model
        self.wiring = wiring
        self.config = config
        self.path = path
        self.standardizer = standardizer
        self.target_scaler = target_scaler
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.best_epoch: int | None = None
        self.epoch = 0
        self.optimizer: optim.Optimizer | None = None
        self.stop_training = False
        self.is_writer = True
        self._step_stale = False

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def classes(self) -> list[Any] | None:
        return self.config.get("classes")

    def model_changed(self) -> None:
        """Declare that the model's structure changed; the step is traced anew."""
        self._step_stale = True

    def predict(self, X: Any, mask: Any = None, timespans: Any = None) -> Prediction:
        """Same as :func:`predict` with this run."""
        return predict(self, X, mask=mask, timespans=timespans)

    def evaluate(
        self, data: SequenceDataset | str | Path, split: str = "test"
    ) -> dict[str, Any]:
        """Same as :func:`evaluate` with this run."""
        return evaluate(self, data, split=split)

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else str(self.path)
        return (
            f"Run({self.config['model']['cell']} on {self.config['data']['name']}, "
            f"{len(self.history)} epochs, {where})"
        )


# -- the training loop -------------------------------------------------------


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The global order of the ``n`` training series in ``epoch``."""
    return np.random.default_rng([seed, 3, epoch]).permutation(n)


def _epoch_seed(seed: int, epoch: int) -> int:
    """The MLX seed of ``epoch`` (dropout and any other draw in the step)."""
    return int(np.random.SeedSequence([seed, 4, epoch]).generate_state(1)[0])


def _loss(
    model: SequenceModel, task: str, per_step: bool, x, mask, spans, y, weight
) -> tuple[mx.array, mx.array]:
    """Weighted mean loss of a batch and the weighted count of right answers.

    ``weight`` is 1 for the series of the batch and 0 for the fillers that
    pad the last batch to the common shape (so the step compiles once).
    """
    out = model(x, mask, spans)
    total = mx.maximum(mx.sum(weight), 1.0)
    if task == "classification":
        losses = nn.losses.cross_entropy(out, y, reduction="none")
        right = (mx.argmax(out, axis=-1) == y).astype(weight.dtype)
        return mx.sum(losses * weight) / total, mx.sum(right * weight)
    if per_step:
        steps = mask.astype(out.dtype) * weight[:, None]
        squared = mx.mean(mx.square(out - y), axis=-1) * steps
        return mx.sum(squared) / mx.maximum(mx.sum(steps), 1.0), mx.array(0.0)
    squared = mx.mean(mx.square(out - y), axis=-1)
    return mx.sum(squared * weight) / total, mx.array(0.0)


class Trainer:
    """Runs the epochs of a :class:`Run`: steps, validation, checkpoints.

    Args:
        run (Run): The run to train; its model is updated in place.
        prepared (_Prepared): The data.
        training (TrainingConfig): Hyper-parameters.
        folder (RunFolder | None): Where to write, ``None`` for nothing.
        callbacks (Sequence[Callback]): Called around steps and epochs.
        plots (bool): Draw PNGs at the end. Default: ``True``.
        compile (bool | str): Compile the step with ``mx.compile``; ``"auto"``
            compiles when the run has at least :data:`COMPILE_MIN_STEPS`
            steps. Default: ``"auto"``.
        dp (DataParallel, optional): The processes that share the work.
            Default: this process alone.
    """

    def __init__(
        self,
        run: Run,
        prepared: _Prepared,
        training: TrainingConfig,
        folder: RunFolder | None,
        callbacks: Sequence[Callback] = (),
        plots: bool = True,
        compile: bool | str = "auto",
        dp: DataParallel | None = None,
    ) -> None:
        self.run = run
        self.data = prepared
        self.training = training
        self.callbacks = list(callbacks)
        self.plots = plots
        if compile == "auto":
            per_epoch = math.ceil(len(prepared.train) / training.batch_size)
            compile = (
                training.epochs * per_epoch >= COMPILE_MIN_STEPS
                and not uses_native(run.model)
            )
        self.compile = bool(compile)
        self.dp = dp if dp is not None else DataParallel(None)
        self.rank, self.size = self.dp.rank, self.dp.size
        self.is_writer = self.dp.is_writer
        run.is_writer = self.is_writer
        self.folder = folder if self.is_writer else None
        self.optimizer = self._make_optimizer()
        run.optimizer = self.optimizer
        self.best_score: list[float] | None = None
        self.best_weights: dict[str, mx.array] | None = None
        self.bad_epochs = 0
        self.initial: dict[str, float] = {}
        self._step: Any = None

    def _make_optimizer(self) -> optim.Optimizer:
        training = self.training
        learning_rate: Any = training.lr
        if training.schedule == "cosine":
            steps = math.ceil(len(self.data.train) / training.batch_size)
            learning_rate = optim.cosine_decay(
                training.lr, max(training.epochs * steps, 1), training.lr / 100
            )
        if training.weight_decay:
            return optim.AdamW(
                learning_rate=learning_rate, weight_decay=training.weight_decay
            )
        return optim.Adam(learning_rate=learning_rate)

    # -- one step

    def average_gradients(self, grads: Any, share: Any) -> Any:
        """The single point where gradients of all processes are combined.

        ``share`` is this process's part of the global batch, so the sum
        ``Σ_r share_r g_r`` is the gradient of the global batch's mean loss.
        """
        return self.dp.average_gradients(grads, share)

    def _build_step(self) -> Any:
        model, optimizer = self.run.model, self.optimizer
        task, per_step = self.data.task, self.data.per_step
        clip_norm = self.training.clip_norm

        def loss_fn(model, x, mask, spans, y, weight):
            return _loss(model, task, per_step, x, mask, spans, y, weight)

        loss_and_grad = nn.value_and_grad(model, loss_fn)

        dp = self.dp

        def step(x, mask, spans, y, weight, share):
            (loss, correct), grads = loss_and_grad(model, x, mask, spans, y, weight)
            grads = self.average_gradients(grads, share)
            if clip_norm is not None:
                grads, _ = optim.clip_grad_norm(grads, clip_norm)
            optimizer.update(model, grads)
            return dp.all_sum(loss * share), dp.all_sum(correct)

        if not self.compile:
            return step
        # The state trees must be complete before tracing; init keeps any
        # state restored from a checkpoint.
        optimizer.init(model.trainable_parameters())
        state = [model.state, optimizer.state, mx.random.state]
        return mx.compile(step, inputs=state, outputs=state)

    def _batch_arrays(
        self,
        split: _Split,
        batch: np.ndarray,
        width: int,
        noise: np.random.Generator | None,
    ) -> tuple:
        """This process's shard of a global batch, padded to ``width`` series
        of weight 0, and the shard's share of the batch's loss.

        Noise is drawn for the whole global batch (the same draws on every
        process) and each process keeps its rows, so a series gets the same
        noise whatever the number of processes.
        """
        rows = self.dp.shard(np.arange(batch.size))
        index = batch[rows]
        weight = np.zeros(width, np.float32)
        weight[: index.size] = 1.0
        if self.data.per_step:  # the loss is a mean over observed steps
            observed = split.mask[index].sum()
            share = self.dp.share(observed, split.mask[batch].sum())
        else:
            share = self.dp.share(index.size, batch.size)
        index = np.resize(index, width)
        spans = None if split.timespans is None else mx.array(split.timespans[index])
        x = split.X[index]
        if noise is not None:
            rows_drawn = min(self.training.batch_size, len(split))
            shape = (rows_drawn, *x.shape[1:])
            jitter = noise.normal(0.0, self.training.input_noise, shape)
            jitter = np.resize(jitter[rows], x.shape)
            x = (x + jitter * split.mask[index][:, :, None]).astype(np.float32)
        return (
            mx.array(x),
            mx.array(split.mask[index]),
            spans,
            mx.array(split.y[index]),
            mx.array(weight),
            mx.array(share, dtype=mx.float32),
        )

    # -- epochs

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        run, data = self.run, self.data
        if self._step is None or run._step_stale:
            self._step = self._build_step()
            run._step_stale = False
        order = _epoch_order(self.training.seed, epoch, len(data.train))
        # Each process draws its own stream (dropout); rank 0 draws those
        # of a run in one process.
        mx.random.seed(_epoch_seed(self.training.seed, epoch) ^ self.rank)
        noise = None
        if self.training.input_noise > 0:
            noise = np.random.default_rng([self.training.seed, 5, epoch])
        size = self.training.batch_size
        batches = [order[start : start + size] for start in range(0, order.size, size)]
        # Every batch has one shape, so the compiled step is traced once.
        width = math.ceil(min(size, order.size) / self.size)
        run.model.train()
        started = time.perf_counter()
        total_loss, total_correct, seen = 0.0, 0, 0
        for number, batch in enumerate(batches, 1):
            where = f"step {number} of epoch {epoch}"
            with self.dp.guard(f"preparing {where}"):
                arrays = self._batch_arrays(data.train, batch, width, noise)
            with self.dp.waiting(where):
                loss, correct = self._step(*arrays)
                mx.eval(loss, correct, run.model.parameters(), self.optimizer.state)
            batch_loss = float(loss.item())
            if not math.isfinite(batch_loss):
                raise NCPError(
                    f"the training loss became {batch_loss} in epoch {epoch}, step "
                    f"{number}; lower --lr or set a gradient clip"
                )
            total_loss += batch_loss * batch.size
            total_correct += round(correct.item())
            seen += batch.size
            logs = {
                "epoch": epoch,
                "step": number,
                "steps": len(batches),
                "loss": batch_loss,
                "mean_loss": total_loss / seen,
                "samples": seen,
                "seconds": time.perf_counter() - started,
            }
            if data.task == "classification":
                logs["accuracy"] = total_correct / seen
            with self.dp.collect():  # raised at the next meeting of the ranks
                for callback in self.callbacks:
                    callback.on_step_end(run, number, logs)
        self.dp.check_peers(what=f"epoch {epoch}")
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"epoch": epoch, "loss": total_loss / max(seen, 1)}
        if data.task == "classification":
            row["accuracy"] = total_correct / max(seen, 1)
        row["seconds"] = seconds
        row["samples_per_second"] = seen / seconds if seconds > 0 else None
        return row

    def validate(self, row: dict[str, Any]) -> bool:
        """Add validation metrics to ``row``; True if this is the best epoch."""
        if len(self.data.val) == 0:
            row["val_loss"] = None
            return True
        scores = self.score(self.data.val, "validating")
        row["val_loss"] = scores["loss"]
        if self.data.task == "classification":
            row["val_accuracy"] = scores["accuracy"]
        else:
            row["val_mse"] = scores["mse"]
        score = [-scores["loss"]]
        if (
            self.training.monitor == "val_accuracy"
            and self.data.task == "classification"
        ):
            score.insert(0, scores["accuracy"])
        if self.best_score is not None and score <= self.best_score:
            return False
        self.best_score = score
        return True

    def score(self, split: _Split, what: str) -> dict[str, Any]:
        """Loss and metrics on a whole split; each process scores its shard
        and the sums are combined, so every process gets the same numbers."""
        if not self.dp.is_distributed:
            return _score(self.run, split)
        run = self.run
        with self.dp.guard(what):
            part = split.take(self.dp.shard(np.arange(len(split))))
            stats = score_statistics(
                run.task,
                _forward(run, part),
                part.y,
                num_classes=len(run.classes or []),
                mask=part.mask,
                per_step=self.data.per_step,
                inverse=None
                if run.target_scaler is None
                else run.target_scaler.inverse,
            )
        return metrics_from_statistics(run.task, self.dp.sum_arrays(stats, what))

    def fit(self, first_epoch: int, stop_after_epochs: int | None) -> None:
        run, training = self.run, self.training
        if first_epoch == 1:
            initial = self.score(self.data.train, "scoring the initial model")
            self.initial = {"train_loss": initial["loss"]}
            if len(self.data.val):
                initial = self.score(self.data.val, "scoring the initial model")
                self.initial["val_loss"] = initial["loss"]
        with self.dp.collect():
            for callback in self.callbacks:
                callback.on_train_begin(run)
        for done, epoch in enumerate(range(first_epoch, training.epochs + 1), 1):
            run.epoch = epoch
            with self.dp.collect():
                for callback in self.callbacks:
                    callback.on_epoch_begin(run, epoch)
            row = self.train_epoch(epoch)
            improved = self.validate(row)
            if improved:
                self.best_weights = _flat_parameters(run.model)
                run.best_epoch = epoch
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            row["best"] = improved
            row["lr"] = float(self.optimizer.learning_rate.item())
            run.history.append(row)
            with self.dp.guard(f"ending epoch {epoch}"):
                for callback in self.callbacks:
                    callback.on_epoch_end(run, epoch, row)
            if training.patience is not None and self.bad_epochs >= training.patience:
                run.stop_training = True
            # A callback on one process may ask to stop; all stop together.
            run.stop_training = self.dp.any(run.stop_training)
            with self.dp.guard(f"writing the checkpoint of epoch {epoch}"):
                self.checkpoint(
                    epoch, finished=run.stop_training or epoch >= training.epochs
                )
            if run.stop_training:
                break
            if stop_after_epochs is not None and done >= stop_after_epochs:
                return
        self.finish()

    # -- files

    def _state(self, finished: bool) -> dict[str, Any]:
        return {
            "best_epoch": self.run.best_epoch,
            "best_score": self.best_score,
            "bad_epochs": self.bad_epochs,
            "initial": self.initial,
            "stopped_early": self.run.stop_training,
            "finished": finished,
            "history": self.run.history,
            "rng": {
                "numpy_order": [self.training.seed, 3, "epoch"],
                "mlx_seed": [self.training.seed, 4, "epoch"],
            },
        }

    def checkpoint(self, epoch: int, finished: bool) -> None:
        if self.folder is None:
            return
        assert self.best_weights is not None and self.run.best_epoch is not None
        if self.run.best_epoch == epoch:
            self.folder.write_model(self.best_weights)
        self.folder.write_metrics(self.run.history)
        self.folder.write_checkpoint(
            epoch,
            _flat_parameters(self.run.model),
            dict(tree_flatten(self.optimizer.state)),
            self._state(finished),
            best=(self.run.best_epoch, self.best_weights),
        )
        for callback in self.callbacks:
            callback.on_checkpoint(self.run, epoch, self.folder.checkpoint_dir)

    def restore(self, state: Mapping[str, Any], weights, optimizer, best) -> int:
        """Load a checkpoint; returns the epoch to continue from."""
        run = self.run
        _load_parameters(run.model, weights, "checkpoint weights")
        restored = tree_unflatten(list(optimizer.items()))
        self.optimizer.state = restored
        mx.eval(self.optimizer.state)
        best_score = state.get("best_score")
        self.best_score = None if best_score is None else list(best_score)
        if state.get("best_epoch") is not None and best is not None:
            run.best_epoch = int(state["best_epoch"])
            self.best_weights = dict(best)
        self.bad_epochs = int(state.get("bad_epochs", 0))
        run.history = [dict(row) for row in state.get("history", [])]
        self.initial = dict(state.get("initial") or {})
        run.stop_training = bool(state.get("stopped_early", False))
        return int(state["epoch"]) + 1

    def _best_row(self) -> dict[str, Any]:
        for row in self.run.history:
            if row["epoch"] == self.run.best_epoch:
                return row
        return {}

    def finish(self) -> None:
        """Load the best weights, evaluate on test, write summary and plots."""
        run, data = self.run, self.data
        if self.best_weights is not None:
            _load_parameters(run.model, self.best_weights, "best weights")
        scores = self.score(data.test, "testing") if len(data.test) else {}
        run.metrics = scores
        last = run.history[-1] if run.history else {}
        run.summary = {
            "format": FORMAT_VERSION,
            "status": "stopped_early" if run.stop_training else "finished",
            "epochs_run": len(run.history),
            "best_epoch": run.best_epoch,
            "best_val_loss": self._best_row().get("val_loss"),
            "train_seconds": sum(row.get("seconds", 0.0) for row in run.history),
            "last_epoch": last,
            "initial": self.initial,
            "train": self.score(data.train, "scoring the training split"),
            "test": scores,
            "parameters": _count_parameters(run.model),
            "wiring": run.wiring.summary(),
            "data": run.config["data"],
            # which kernels trained it: native and MLX differ by rounding
            "kernels": "native" if uses_native(run.model) else "mlx",
            "compiled": self.compile,
        }
        with self.dp.guard("writing the summary"):
            if self.folder is not None:
                model_path = self.folder.path / MODEL_FILE
                if model_path.is_file():
                    run.summary["model_sha256"] = sha256_file(model_path)
                self.folder.write_summary(run.summary)
                if self.plots:
                    _draw_plots(run, self.folder)
            for callback in self.callbacks:
                callback.on_train_end(run, run.summary)


def _count_parameters(model: nn.Module) -> int:
    flat: Any = tree_flatten(model.trainable_parameters())
    return int(sum(value.size for _, value in flat))


def _draw_plots(run: Run, folder: RunFolder) -> None:
    from ncp_core.plots import (
        plot_confusion_matrix,
        plot_learning_curves,
        plot_wiring,
        plotting_available,
    )

    if not plotting_available():
        return
    curves, wiring_png, confusion_png = (folder.path / name for name in PLOT_FILES)
    plot_learning_curves(run.history, curves, best_epoch=run.best_epoch)
    with contextlib.suppress(ImportError):  # networkx is optional too
        plot_wiring(run.wiring, wiring_png)
    matrix = run.metrics.get("confusion_matrix")
    if matrix is not None and run.classes is not None:
        plot_confusion_matrix(matrix, run.classes, confusion_png)


# -- inference ---------------------------------------------------------------

_EVAL_BATCH = 256


def _forward(run: Run, split: _Split) -> np.ndarray:
    """Model outputs for every series of a prepared split, in batches."""
    model = run.model
    model.eval()
    outputs = []
    for start in range(0, len(split), _EVAL_BATCH):
        index = np.arange(start, min(start + _EVAL_BATCH, len(split)))
        x = mx.array(split.X[index])
        mask = mx.array(split.mask[index])
        spans = None if split.timespans is None else mx.array(split.timespans[index])
        out = model(x, mask, spans)
        mx.eval(out)
        outputs.append(np.array(out, dtype=np.float32))
    model.train()
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _score(run: Run, split: _Split) -> dict[str, Any]:
    """Loss and metrics of the model on a prepared split (targets encoded)."""
    out = _forward(run, split)
    if run.task == "classification":
        probabilities = _softmax(out.astype(np.float64))
        picked = probabilities[np.arange(len(split)), split.y]
        loss = float(-np.mean(np.log(np.maximum(picked, 1e-12))))
        metrics = classification_metrics(
            split.y, probabilities.argmax(axis=-1), len(run.classes or [])
        )
        return {"loss": loss, **metrics}
    per_step = bool(run.config["model"].get("per_step", False))
    mask = split.mask if per_step else None
    if per_step:
        weight = split.mask[..., None]
        loss = float(
            np.sum(np.square(out - split.y) * weight)
            / max(weight.sum() * out.shape[-1], 1)
        )
    else:
        loss = float(np.mean(np.square(out - split.y)))
    assert run.target_scaler is not None
    metrics = regression_metrics(
        run.target_scaler.inverse(split.y), run.target_scaler.inverse(out), mask
    )
    return {"loss": loss, **metrics}


def _inputs(
    run: Run, X: Any, mask: Any, timespans: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check raw inputs against the run and standardise them."""
    x = np.asarray(X, dtype=np.float32)
    if x.ndim == 2 and run.config["data"]["channels"] == 1:
        x = x[:, :, None]
    channels = int(run.config["data"]["channels"])
    if x.ndim != 3 or x.shape[2] != channels:
        raise DataError(
            f"inputs have shape {x.shape}; this run was trained on "
            f"(n, L, {channels}) series"
        )
    if mask is None:
        observed = np.isfinite(x).all(axis=2) | np.isnan(x).all(axis=2)
        if not observed.all():
            i, t = (int(v) for v in np.argwhere(~observed)[0])
            raise DataError(
                f"inputs[{i}, {t}] holds inf or a partial NaN; mark missing steps "
                "with NaN in every channel or pass a mask"
            )
        m = np.asarray(~np.isnan(x).all(axis=2))
    else:
        m = np.asarray(mask).astype(bool)
        if m.shape != x.shape[:2]:
            raise DataError(
                f"mask has shape {m.shape}; expected {x.shape[:2]} to match the inputs"
            )
    bad = ~np.isfinite(x) & m[:, :, None]
    if bad.any():
        i, t, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"inputs[{i}, {t}, {c}] is {x[i, t, c]} at an observed step; expected a "
            "finite number (mask the step out if it is missing)"
        )
    empty = ~m.any(axis=1)
    if empty.any():
        raise DataError(
            f"series {int(np.flatnonzero(empty)[0])} has no observed step; drop it"
        )
    x = np.where(m[:, :, None], x, 0.0).astype(np.float32)
    spans = None
    if timespans is not None:
        spans = np.asarray(timespans, dtype=np.float32)
        if spans.shape != m.shape:
            raise DataError(f"timespans have shape {spans.shape}; expected {m.shape}")
    return run.standardizer.transform(x, m), m, spans


def predict(run: Run, X: Any, mask: Any = None, timespans: Any = None) -> Prediction:
    """Predict labels (and probabilities) or values for raw input series.

    Inputs are standardised with the statistics of the run's training data.

    Args:
        run (Run): A run from :func:`fit` or :func:`load_run`.
        X (array): ``(n, L, C)`` inputs in the units of the training data
            (``(n, L)`` when ``C`` is 1). Without ``mask``, a step that is NaN
            in every channel counts as missing.
        mask (array, optional): ``(n, L)`` observed steps. Default: inferred.
        timespans (array, optional): ``(n, L)`` elapsed time per step.
            Default: ``None`` (1 everywhere).

    Returns:
        Prediction: labels, class ids and probabilities, or values.

    Raises:
        DataError: the inputs do not fit the run.
    """
    x, m, spans = _inputs(run, X, mask, timespans)
    split = _Split(x, m, spans, np.zeros(len(x)))
    out = _forward(run, split)
    if run.task == "classification":
        probabilities = _softmax(out.astype(np.float64)).astype(np.float32)
        indices = probabilities.argmax(axis=-1).astype(np.int64)
        classes = list(run.classes or [])
        return Prediction(
            labels=[classes[i] for i in indices],
            indices=indices,
            probabilities=probabilities,
            classes=classes,
            mask=m,
        )
    assert run.target_scaler is not None
    return Prediction(values=run.target_scaler.inverse(out), mask=m)


def evaluate(
    run: Run, data: SequenceDataset | str | Path, split: str = "test"
) -> dict[str, Any]:
    """Metrics of a run's model on one split of a dataset.

    Args:
        run (Run): A run from :func:`fit` or :func:`load_run`.
        data (SequenceDataset | str | Path): The dataset, a registered name or
            a file.
        split (str): ``"test"`` or ``"train"``. Default: ``"test"``.

    Returns:
        dict: Classification: ``loss``, ``accuracy``, ``macro_f1``, ``f1``,
        ``confusion_matrix``, ``n``. Regression: ``loss``, ``mse``, ``rmse``,
        ``mae``, ``n`` (in the units of the targets).

    Raises:
        DataError: the data does not fit the run (channels, task, labels).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    dataset, _ = _resolve_data(data)
    if dataset.task != run.task:
        raise DataError(
            f"dataset '{dataset.name}' is a {dataset.task} task but the run was "
            f"trained for {run.task}"
        )
    X = getattr(dataset, f"X_{split}")
    mask = getattr(dataset, f"mask_{split}")
    spans = getattr(dataset, f"timespans_{split}")
    y = getattr(dataset, f"y_{split}")
    x, m, spans = _inputs(run, X, mask, spans)
    if run.task == "classification":
        index = {str(c): i for i, c in enumerate(run.classes or [])}
        unknown = sorted({str(v) for v in np.asarray(y).tolist()} - set(index))
        if unknown:
            raise DataError(
                f"dataset '{dataset.name}' has label(s) {', '.join(unknown)} that "
                f"the run never saw; it knows {run.classes}"
            )
        target = np.array([index[str(v)] for v in np.asarray(y).tolist()], np.int64)
    else:
        assert run.target_scaler is not None
        values, _ = _regression_targets(y, x.shape[1])
        target = run.target_scaler.transform(values)
    return _score(run, _Split(x, m, spans, target))


# -- fit, resume, load -------------------------------------------------------


def _check_cell(cell: str, mode: str) -> None:
    if cell not in CELLS:
        raise WiringError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")
    if mode not in ("default", "pure", "no_gate"):
        raise WiringError(
            f"unknown mode {mode!r}; expected 'default', 'pure' or 'no_gate'"
        )


def fit(
    data: SequenceDataset | str | Path = DEFAULT_DATASET,
    *,
    wiring: str | Wiring = DEFAULT_WIRING,
    wiring_params: Mapping[str, Any] | None = None,
    cell: str = "cfc",
    mode: str = "default",
    cell_params: Mapping[str, Any] | None = None,
    epochs: int = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    lr: float = TrainingConfig.lr,
    seed: int = TrainingConfig.seed,
    val_fraction: float = TrainingConfig.val_fraction,
    patience: int | None = TrainingConfig.patience,
    clip_norm: float | None = TrainingConfig.clip_norm,
    weight_decay: float = TrainingConfig.weight_decay,
    limit_train: int | None = None,
    schedule: str = TrainingConfig.schedule,
    monitor: str = TrainingConfig.monitor,
    input_noise: float = TrainingConfig.input_noise,
    out: str | Path | None = None,
    force: bool = False,
    callbacks: Sequence[Callback] = (),
    plots: bool = True,
    compile: bool | str = "auto",
    stop_after_epochs: int | None = None,
    distributed: bool | None = None,
) -> Run:
    """Train a wired CfC or LTC model on a sequence dataset.

    The model's initial weights, the validation split and the order of every
    epoch depend only on ``seed``, so a run resumed with :func:`resume` ends
    with the same weights as one that was never interrupted.

    Args:
        data (SequenceDataset | str | Path): A dataset, a registered dataset
            name or a data file. Default: ``"japanese_vowels"``.
        wiring (str | Wiring): A registered wiring name or a wiring object.
            Default: ``"auto_ncp"``.
        wiring_params (Mapping, optional): Constructor parameters of a named
            wiring. ``units`` defaults to :data:`DEFAULT_UNITS` and the output
            size to one motor neuron per class (or target).
        cell (str): ``"cfc"`` or ``"ltc"``. Default: ``"cfc"``.
        mode (str): CfC mode, ``"default"``, ``"pure"`` or ``"no_gate"``.
        cell_params (Mapping, optional): More keyword arguments of the
            sequence module (e.g. ``ode_unfolds`` for LTC).
        epochs, batch_size, lr, seed, val_fraction, patience, clip_norm,
            weight_decay, limit_train, schedule, monitor, input_noise: see
            :class:`TrainingConfig`.
        out (str | Path, optional): Run folder; ``None`` keeps the run in
            memory only.
        force (bool): Overwrite the run files of a folder that holds a run.
            Default: ``False``.
        callbacks (Sequence[Callback]): Training hooks. Default: none.
        plots (bool): Write PNG plots into the run folder. Default: ``True``.
        compile (bool | str): Compile the training step with ``mx.compile``;
            ``"auto"`` does when the run has at least
            :data:`COMPILE_MIN_STEPS` steps, enough to repay the tracing.
            Default: ``"auto"``.
        stop_after_epochs (int, optional): Return after this many epochs
            without finishing the run (its checkpoint stays resumable); for
            tests and time-sliced jobs.
        distributed (bool, optional): Train data-parallel over the processes
            of an ``mlx.launch`` or ``mpirun`` launch. ``None`` does so when
            the environment shows a launch; ``True`` requires one; ``False``
            trains alone. Only rank 0 writes ``out``. Default: ``None``.

    Returns:
        Run: The trained run, holding the best model and its test metrics.

    Raises:
        DataError: the data cannot be trained on.
        WiringError: an unknown cell, mode or wiring parameter.
        CheckpointError: ``out`` already holds a run and ``force`` is off.
        DistributedError: a process of a distributed run failed; raised on
            every process, naming the rank.
    """
    training = TrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        val_fraction=val_fraction,
        patience=patience,
        clip_norm=clip_norm,
        weight_decay=weight_decay,
        limit_train=limit_train,
        schedule=schedule,
        monitor=monitor,
        input_noise=input_noise,
    ).check()
    _check_cell(cell, mode)
    dp = init_from_env(distributed)
    folder = RunFolder(out) if out is not None else None
    with dp.guard("checking the run folder"):
        if folder is not None and dp.is_writer:
            folder.check_new(force=force)  # fail before any data is loaded

    with dp.guard("loading the data and building the wiring"):
        dataset, data_record = _resolve_data(data)
        prepared = _prepare(dataset, training)
        built = _make_wiring(
            wiring, dict(wiring_params or {}), prepared.outputs, dataset.channels
        )
    model_spec = {
        "cell": cell,
        "mode": mode,
        "cell_params": dict(cell_params or {}),
        "head": "linear",
        "outputs": prepared.outputs,
        "per_step": prepared.per_step,
    }
    mx.random.seed(seed)
    model = _build_model(model_spec, built, dataset.channels)
    # The seed gives every process the same weights; rank 0's are sent anyway
    # in case the hosts' MLX builds draw differently.
    model.update(dp.broadcast(model.parameters()))
    mx.eval(model.parameters())

    from ncp_core.plugins import wiring_record

    config = {
        "ncp_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": prepared.task,
        "data": {
            **data_record,
            "channels": dataset.channels,
            "length": dataset.length,
            "n_train": len(prepared.train),
            "n_val": len(prepared.val),
            "n_test": len(prepared.test),
            "fingerprint": _fingerprint(dataset),
        },
        "classes": prepared.classes,
        "standardizer": prepared.standardizer.to_dict(),
        "target_scaler": None
        if prepared.target_scaler is None
        else prepared.target_scaler.to_dict(),
        "wiring": wiring_record(built),
        "model": model_spec,
        "training": dataclasses.asdict(training),
    }
    run = Run(
        model,
        built,
        config,
        None if folder is None else folder.path,
        prepared.standardizer,
        prepared.target_scaler,
    )
    with dp.guard("creating the run folder"):
        if folder is not None and dp.is_writer:
            folder.create(force=force)
            folder.write_config({k: v for k, v in config.items() if k != "format"})
    trainer = Trainer(run, prepared, training, folder, callbacks, plots, compile, dp)
    trainer.fit(1, stop_after_epochs)
    return run


def _rebuild(folder: RunFolder) -> tuple[Run, dict[str, Any]]:
    """A run with the model of ``config.json`` (weights not loaded yet)."""
    config = folder.read_config()
    try:
        model_spec = config["model"]
        record = config["wiring"]
        channels = int(config["data"]["channels"])
        standardizer = Standardizer.from_dict(config["standardizer"])
        target_scaler = (
            None
            if config.get("target_scaler") is None
            else _TargetScaler.from_dict(config["target_scaler"])
        )
        _check_cell(model_spec["cell"], model_spec.get("mode", "default"))
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, NCPError):
            raise
        raise CheckpointError(
            f"{folder.path / 'config.json'} is missing or has a bad entry "
            f"({error!r}); the file is damaged"
        ) from None
    from ncp_core.plugins import wiring_from_config

    wiring = wiring_from_config(record)
    if not wiring.is_built():
        wiring.build(channels)
    mx.random.seed(int(config.get("training", {}).get("seed", 0)))
    model = _build_model(model_spec, wiring, channels)
    run = Run(model, wiring, config, folder.path, standardizer, target_scaler)
    return run, config


def load_run(path: str | Path) -> Run:
    """Load a saved run: its best model, history, metrics and data statistics.

    Args:
        path (str | Path): The run folder.

    Returns:
        Run: Ready for :func:`predict` and :func:`evaluate`.

    Raises:
        CheckpointError: the folder holds no run, ``config.json`` is from a
            newer format, or ``model.safetensors`` is missing or corrupt.
    """
    folder = RunFolder(path)
    run, _ = _rebuild(folder)
    summary = folder.read_summary() or {}
    weights = folder.read_model(sha256=summary.get("model_sha256"))
    _load_parameters(run.model, weights, f"model weights {folder.path / MODEL_FILE}")
    run.history = folder.read_metrics()
    run.summary = summary
    run.metrics = dict(summary.get("test") or {})
    run.best_epoch = summary.get("best_epoch")
    run.epoch = len(run.history)
    return run


def resume(
    path: str | Path,
    *,
    data: SequenceDataset | str | Path | None = None,
    epochs: int | None = None,
    callbacks: Sequence[Callback] = (),
    plots: bool = True,
    compile: bool | str = "auto",
    stop_after_epochs: int | None = None,
    distributed: bool | None = None,
) -> Run:
    """Continue a run from its last checkpoint.

    With the same ``epochs`` the result equals an uninterrupted run: weights,
    optimizer state, RNG state, early-stopping counters and history all come
    from the checkpoint, and the data order from ``(seed, epoch)``.

    Args:
        path (str | Path): The run folder.
        data (SequenceDataset | str | Path, optional): The dataset; needed only
            for runs trained on an in-memory dataset. Default: as recorded.
        epochs (int, optional): A new total number of epochs. Default: as
            recorded.
        callbacks, plots, compile, stop_after_epochs, distributed: as in
            :func:`fit`. Every process reads the run folder, so across hosts
            it must be on a shared file system.

    Returns:
        Run: The finished (or again interrupted) run.

    Raises:
        CheckpointError: no checkpoint, or it does not fit the run.
        DataError: the data differs from the data the run started with.
        DistributedError: a process of a distributed run failed; raised on
            every process, naming the rank.
    """
    dp = init_from_env(distributed)
    folder = RunFolder(path)
    with dp.guard("reading the checkpoint"):
        run, config = _rebuild(folder)
        state, weights, optimizer, best = folder.read_checkpoint()
        training = TrainingConfig(**config["training"])
        if epochs is not None:
            training.epochs = epochs
            config["training"]["epochs"] = epochs
        training.check()

    with dp.guard("loading the data"):
        record = config["data"]
        if data is None:
            if record.get("kind") == "memory":
                raise DataError(
                    f"run {folder.path} was trained on an in-memory dataset "
                    f"'{record.get('name')}'; pass it again with data=..."
                )
            data = record["source"]
        dataset, _ = _resolve_data(data)
        if _fingerprint(dataset) != record.get("fingerprint"):
            raise DataError(
                f"dataset '{dataset.name}' is not the data run {folder.path} "
                "started with (its training arrays differ); resume with the "
                "original data"
            )
        prepared = _prepare(dataset, training)
    trainer = Trainer(run, prepared, training, folder, callbacks, plots, compile, dp)
    with dp.guard("restoring the checkpoint"):
        next_epoch = trainer.restore(state, weights, optimizer, best)
    run.epoch = next_epoch - 1
    with dp.guard("updating config.json"):
        if epochs is not None and dp.is_writer:
            folder.write_config({k: v for k, v in config.items() if k != "format"})
    if state.get("finished") and (epochs is None or next_epoch > training.epochs):
        trainer.finish()
        return run
    run.stop_training = False
    trainer.fit(next_epoch, stop_after_epochs)
    return run
