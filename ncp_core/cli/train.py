"""``ncp train``, ``ncp eval`` and ``ncp predict``: the main job on the command line."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np

from ncp_core.cli.common import (
    CLIError,
    cli_errors,
    echo_json,
    json_option,
    make_console,
    param_option,
    parse_params,
)

__all__ = ["COMMANDS", "eval_", "predict", "train"]

_MODES = ("default", "pure", "no_gate")


# -- progress ------------------------------------------------------------------


def _progress_callback(console: Any) -> Any:
    """A training callback drawing one rich progress bar per epoch."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ncp_core.train import Callback

    class RichProgress(Callback):
        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task: Any = None

        def on_epoch_begin(self, run: Any, epoch: int) -> None:
            if not console.is_terminal:
                return  # a log file gets the epoch lines only
            epochs = run.config["training"]["epochs"]
            self.progress = Progress(
                TextColumn(f"epoch {epoch:>{len(str(epochs))}}/{epochs}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=None, status="")

        def on_step_end(self, run: Any, step: int, logs: Mapping[str, Any]) -> None:
            if self.progress is None:
                return
            rate = logs["samples"] / max(logs["seconds"], 1e-9)
            status = f"loss {logs['mean_loss']:.4f}"
            if "accuracy" in logs:
                status += f"  acc {logs['accuracy']:.3f}"
            status += f"  {rate:,.0f} seq/s"
            self.progress.update(
                self.task, completed=step, total=logs["steps"], status=status
            )

        def on_epoch_end(self, run: Any, epoch: int, logs: Mapping[str, Any]) -> None:
            if self.progress is not None:
                self.progress.stop()
                self.progress = None
            console.print(_epoch_line(run, logs))

    return RichProgress()


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _epoch_line(run: Any, logs: Mapping[str, Any]) -> Any:
    epochs = run.config["training"]["epochs"]
    parts = [
        f"epoch {logs['epoch']:>{len(str(epochs))}}/{epochs}",
        f"loss {_fmt(logs.get('loss'))}",
    ]
    if "accuracy" in logs:
        parts.append(f"acc {_fmt(logs['accuracy'], 3)}")
    parts.append(f"val_loss {_fmt(logs.get('val_loss'))}")
    if "val_accuracy" in logs:
        parts.append(f"val_acc {_fmt(logs['val_accuracy'], 3)}")
    rate = logs.get("samples_per_second")
    if rate:
        parts.append(f"{rate:,.0f} seq/s")
    parts.append(f"{logs.get('seconds', 0.0):.1f}s")
    from rich.text import Text

    line = Text("  ".join(parts))
    if logs.get("best"):
        line.append("  best", style="green")
    return line


# -- tables ----------------------------------------------------------------------


def _metric_rows(task: str, metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    if not metrics:
        return [("test", "no test split")]
    if task == "classification":
        return [
            ("test accuracy", _fmt(metrics.get("accuracy"))),
            ("test macro F1", _fmt(metrics.get("macro_f1"))),
            ("test loss", _fmt(metrics.get("loss"))),
            ("test series", _fmt(metrics.get("n"))),
        ]
    return [
        ("test MSE", _fmt(metrics.get("mse"), 6)),
        ("test RMSE", _fmt(metrics.get("rmse"), 6)),
        ("test MAE", _fmt(metrics.get("mae"), 6)),
        ("test series", _fmt(metrics.get("n"))),
    ]


def _summary_table(run: Any, seconds: float) -> Any:
    from rich.table import Table

    config, summary = run.config, run.summary
    wiring = summary.get("wiring", {})
    table = Table(title="ncp train", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    data = config["data"]
    table.add_row(
        "data",
        f"{data['name']} ({data['n_train']} train, {data['n_val']} validation, "
        f"{data['n_test']} test)",
    )
    model = config["model"]
    cell = model["cell"] + ("" if model["mode"] == "default" else f" ({model['mode']})")
    table.add_row("model", f"{cell} on {wiring.get('name')}, linear head")
    table.add_row(
        "wiring",
        f"{wiring.get('units')} neurons, {wiring.get('synapses')} synapses, "
        f"{wiring.get('sensory_synapses')} sensory, {wiring.get('output_dim')} motor",
    )
    table.add_row("parameters", f"{summary.get('parameters', 0):,}")
    status = summary.get("status", "finished").replace("_", " ")
    table.add_row(
        "epochs",
        f"{summary.get('epochs_run')} ({status}); best {summary.get('best_epoch')}",
    )
    table.add_row(
        "time", f"{seconds:.1f}s ({summary.get('train_seconds', 0):.1f}s training)"
    )
    for key, value in _metric_rows(config["task"], run.metrics):
        table.add_row(key, value)
    if run.path is not None:
        table.add_row("run folder", str(run.path))
    return table


def _confusion_table(classes: list[Any], confusion: list[list[int]]) -> Any:
    from rich.table import Table

    table = Table(
        title="confusion matrix (rows: true, columns: predicted)",
        title_justify="left",
    )
    table.add_column("")
    for label in classes:
        table.add_column(str(label), justify="right")
    for label, row in zip(classes, confusion, strict=True):
        table.add_row(str(label), *(str(v) for v in row))
    return table


# -- train -----------------------------------------------------------------------


def _default_out(data: str, cell: str) -> Path:
    name = Path(data).name if Path(data).suffix else data
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.split(".")[0]) or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{cell}-{stamp}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


_DEFAULTS = {
    "epochs": 80,
    "batch_size": 32,
    "lr": 0.002,
    "seed": 0,
    "val_fraction": 0.15,
    "patience": 40,
    "clip_norm": 1.0,
    "weight_decay": 0.0,
    "schedule": "cosine",
    "monitor": "val_loss",
    "input_noise": 0.4,
}
"""The defaults of :class:`ncp_core.train.TrainingConfig`, for ``--help``
(spelled out so that ``ncp --help`` does not import MLX; a test keeps them
equal)."""


def _hyper(name: str, help: str, **kwargs: object):
    flag = "--" + name.replace("_", "-")
    return click.option(
        flag, name, help=f"{help} [default: {_DEFAULTS[name]}]", **kwargs
    )


@click.command("train")
@click.option(
    "--data",
    default=None,
    metavar="NAME|FILE",
    help="A registered dataset (see `ncp datasets`) or a .ts/.tsv/.npz/.csv "
    "file. [default: japanese_vowels]",
)
@click.option(
    "--wiring",
    "wiring_name",
    default=None,
    metavar="NAME",
    help="A registered wiring (see `ncp wirings`). Its size defaults to 64 "
    "units and one output neuron per class. [default: auto_ncp]",
)
@param_option
@click.option(
    "--cell", type=click.Choice(["cfc", "ltc"]), default=None, help="[default: cfc]"
)
@click.option(
    "--mode",
    type=click.Choice(_MODES),
    default=None,
    help="CfC mode. [default: default]",
)
@click.option(
    "-c",
    "--cell-param",
    "cell_params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A keyword of the CfC or LTC module (ode_unfolds=3, mixed_memory=true); "
    "repeat it.",
)
@_hyper("epochs", "Most epochs.", type=click.IntRange(min=1))
@_hyper("batch_size", "Series per batch.", type=click.IntRange(min=1))
@_hyper("lr", "Adam learning rate.", type=click.FloatRange(min=0, min_open=True))
@_hyper("seed", "Seeds weights, splits and data order.", type=int)
@_hyper(
    "val_fraction",
    "Share of the training series held out (stratified) for model selection and "
    "early stopping.",
    type=click.FloatRange(0, 1, max_open=True),
)
@_hyper(
    "patience",
    "Stop after this many epochs without a better validation score; 0 never "
    "stops early.",
    type=click.IntRange(min=0),
)
@_hyper(
    "monitor",
    "Validation score that picks the best epoch.",
    type=click.Choice(["val_loss", "val_accuracy"]),
)
@_hyper(
    "schedule",
    "Learning-rate schedule (cosine: lr down to lr/100 over --epochs).",
    type=click.Choice(["cosine", "constant"]),
)
@_hyper(
    "input_noise",
    "Std of Gaussian noise on the standardised training inputs.",
    type=click.FloatRange(min=0),
)
@_hyper(
    "clip_norm", "Gradient norm clip; 0 turns it off.", type=click.FloatRange(min=0)
)
@_hyper("weight_decay", "Decoupled weight decay.", type=click.FloatRange(min=0))
@click.option(
    "--limit-train",
    type=click.IntRange(min=1),
    help="Train on this many series only (stratified), for quick trials.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Run folder. [default: runs/<data>-<cell>-<time>]",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Continue the run in DIR from its last checkpoint (--epochs may raise "
    "its total).",
)
@click.option("--force", is_flag=True, help="Overwrite the run files in --out.")
@click.option("--no-plots", is_flag=True, help="Do not draw PNG plots.")
@click.option(
    "--adapt-every",
    type=click.IntRange(min=1),
    help="Epochs between structure updates of a wiring that changes while it "
    "trains (such as 'adaptive'). [default: the wiring's]",
)
@click.option(
    "--adapt-fraction",
    type=click.FloatRange(0, 1),
    help="Share of synapses such a wiring moves per update. [default: the wiring's]",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--distributed/--no-distributed",
    default=None,
    help="Train data-parallel over the processes of an `mlx.launch` or `mpirun` "
    "launch; rank 0 writes and prints. [default: when launched]",
)
@json_option
@cli_errors
def train(
    data: str | None,
    wiring_name: str | None,
    params: tuple[str, ...],
    cell: str | None,
    mode: str | None,
    cell_params: tuple[str, ...],
    limit_train: int | None,
    out: Path | None,
    resume_dir: Path | None,
    force: bool,
    no_plots: bool,
    adapt_every: int | None,
    adapt_fraction: float | None,
    quiet: bool,
    distributed: bool | None,
    as_json: bool,
    **hyper: object,
) -> None:
    """Train a wired CfC or LTC model on a sequence dataset.

    Bare `ncp train` trains an AutoNCP-wired CfC (64 neurons) on the bundled
    JapaneseVowels data. The run folder gets config.json, model.safetensors
    (the best weights), a resumable checkpoint/, metrics.jsonl, summary.json
    and PNG plots.

    \b
    Examples:
      ncp train
      ncp train --data gun_point --cell ltc -p units=24 --epochs 30
      ncp train --data my_TRAIN.ts --wiring random -p units=64 --out runs/mine
      ncp train --resume runs/mine
      mlx.launch -n 2 -- ncp train --data gun_point    # two processes
    """
    import ncp_core.train as api
    from ncp_core.distributed import init_from_env

    started = time.perf_counter()
    # Only rank 0 prints; the others report nothing but their errors.
    writer = init_from_env(distributed).is_writer
    quiet = quiet or not writer
    console = make_console(stderr=True)
    callbacks = [] if (quiet or as_json) else [_progress_callback(console)]
    callbacks.append(_wiring_callbacks(adapt_every, adapt_fraction))
    given = {name: value for name, value in hyper.items() if value is not None}
    if resume_dir is not None:
        fixed = {
            "--wiring": wiring_name,
            "-p": params or None,
            "--cell": cell,
            "--mode": mode,
            "-c": cell_params or None,
            "--limit-train": limit_train,
            "--out": out,
            **{"--" + k.replace("_", "-"): v for k, v in given.items()},
        }
        fixed.pop("--epochs", None)
        named = [name for name, value in fixed.items() if value is not None]
        if named:
            raise CLIError(
                f"{', '.join(named)} cannot change when resuming; --resume takes "
                "only --epochs (a new total) and --data (the same data, moved)"
            )
        run = api.resume(
            resume_dir,
            data=data,
            epochs=given.get("epochs"),  # type: ignore[arg-type]
            callbacks=callbacks,
            plots=not no_plots,
            distributed=distributed,
        )
    else:
        if given.get("patience") == 0:
            given["patience"] = None
        if given.get("clip_norm") == 0:
            given["clip_norm"] = None
        data = data or api.DEFAULT_DATASET
        cell = cell or "cfc"
        run = api.fit(
            data,
            wiring=wiring_name or api.DEFAULT_WIRING,
            wiring_params=parse_params(params),
            cell=cell,
            mode=mode or "default",
            cell_params=parse_params(cell_params, option="-c"),
            limit_train=limit_train,
            out=out or _default_out(data, cell),
            force=force,
            callbacks=callbacks,
            plots=not no_plots,
            distributed=distributed,
            **given,  # type: ignore[arg-type]
        )
    seconds = time.perf_counter() - started
    if not writer:
        return
    if as_json:
        echo_json({"path": str(run.path), "seconds": seconds, **run.summary})
    elif not quiet:
        make_console().print(_summary_table(run, seconds))


def _wiring_callbacks(every: int | None, fraction: float | None) -> Any:
    """Callbacks of a wiring that changes while it trains; inert for others."""
    from ncp_core.adapt import WiringCallbacks

    options = {"adapt_every": every, "adapt_fraction": fraction}
    return WiringCallbacks(**{k: v for k, v in options.items() if v is not None})


# -- eval ------------------------------------------------------------------------


@click.command("eval")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--data",
    default=None,
    metavar="NAME|FILE",
    help="Dataset to evaluate on. [default: the run's own data]",
)
@click.option(
    "--split",
    type=click.Choice(["test", "train"]),
    default="test",
    show_default=True,
)
@json_option
@cli_errors
def eval_(run_dir: Path, data: str | None, split: str, as_json: bool) -> None:
    """Evaluate the best model of a saved run on a dataset's test split.

    Prints accuracy, macro F1 and the confusion matrix (classification) or
    MSE, RMSE and MAE (regression).
    """
    import ncp_core.train as api

    run = api.load_run(run_dir)
    if data is None:
        record = run.config["data"]
        if record.get("kind") == "memory":
            raise CLIError(
                f"run {run_dir} was trained on an in-memory dataset; pass --data"
            )
        data = str(record["source"])
    metrics = api.evaluate(run, data, split=split)
    if as_json:
        echo_json({"run": str(run_dir), "data": data, "split": split, **metrics})
        return
    from rich.table import Table

    console = make_console()
    table = Table(title="ncp eval", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", str(run_dir))
    table.add_row("data", f"{data} ({split} split)")
    for key, value in _metric_rows(run.task, metrics):
        table.add_row(key.replace("test ", ""), value)
    console.print(table)
    if run.task == "classification":
        console.print(_confusion_table(run.classes or [], metrics["confusion_matrix"]))


# -- predict ---------------------------------------------------------------------


def _read_inputs(path: Path) -> tuple[np.ndarray, np.ndarray | None, Any, str]:
    """``(X, mask, timespans, description)`` of the series in an input file."""
    from ncp_core.data.readers import FORMATS, read_series
    from ncp_core.errors import DataError

    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise DataError(f"input file {path} {what}")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        except Exception as error:
            raise DataError(
                f"{path} is not a readable .npz archive ({error})"
            ) from None
        if "X" in arrays:
            return arrays["X"], arrays.get("mask"), arrays.get("timespans"), "X"
    lower = path.name.lower()
    if not any(lower.endswith(suffix) for suffix in FORMATS):
        raise DataError(
            f"unknown input format of {path}: expected .npz (with an X array) or a "
            ".ts, .tsv or .csv dataset file"
        )
    series = read_series(path)
    return series.X, series.mask, None, f"{series.X.shape[0]} series"


def _write_predictions(prediction: Any, path: Path) -> None:
    from ncp_core.runs import atomic_write_bytes, atomic_write_text

    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays: dict[str, np.ndarray] = {"mask": prediction.mask}
        if prediction.labels is not None:
            arrays["labels"] = np.asarray(prediction.labels)
            arrays["indices"] = prediction.indices
            arrays["probabilities"] = prediction.probabilities
            arrays["classes"] = np.asarray(prediction.classes)
        else:
            arrays["values"] = prediction.values
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())
        return
    buffer_text = io.StringIO()
    writer = csv.writer(buffer_text, lineterminator="\n")
    if prediction.labels is not None:
        writer.writerow(["series", "label", *(f"p_{c}" for c in prediction.classes)])
        for i, (label, row) in enumerate(
            zip(prediction.labels, prediction.probabilities, strict=True)
        ):
            writer.writerow([i, label, *(f"{p:.6g}" for p in row)])
    else:
        values = prediction.values
        names = (
            [f"y{d}" for d in range(values.shape[-1])]
            if values.shape[-1] > 1
            else ["y"]
        )
        if values.ndim == 2:
            writer.writerow(["series", *names])
            for i, row in enumerate(values):
                writer.writerow([i, *(f"{v:.6g}" for v in row)])
        else:
            writer.writerow(["series", "step", *names])
            for i, t in zip(*np.nonzero(prediction.mask), strict=True):
                writer.writerow([i, t, *(f"{v:.6g}" for v in values[i, t])])
    atomic_write_text(path, buffer_text.getvalue())


@click.command("predict")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(path_type=Path),
    help="An .npz with X (n, L, C) [mask, timespans], or a Name_TEST/Name_TRAIN "
    "dataset file.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write: .csv or .npz.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@json_option
@cli_errors
def predict(
    run_dir: Path, input_path: Path, out_path: Path, force: bool, as_json: bool
) -> None:
    """Predict with the best model of a saved run.

    Writes one row per series: the class label and the probability of each
    class, or the predicted values (one row per observed step for
    sequence-to-sequence runs), as CSV or .npz by the suffix of --out.
    """
    import ncp_core.train as api

    if out_path.suffix.lower() not in (".csv", ".npz"):
        raise CLIError(
            f"--out {out_path}: unknown format {out_path.suffix or '(no suffix)'!r}; "
            "use .csv or .npz"
        )
    if out_path.is_dir():
        raise CLIError(f"--out {out_path} is a folder; give a .csv or .npz file path")
    if not out_path.parent.is_dir():
        raise CLIError(
            f"--out {out_path}: the folder {out_path.parent} does not exist; "
            "create it first"
        )
    if out_path.exists() and not force:
        raise CLIError(f"--out {out_path} already exists; pass --force to overwrite it")
    run = api.load_run(run_dir)
    X, mask, timespans, what = _read_inputs(input_path)
    prediction = api.predict(run, X, mask=mask, timespans=timespans)
    _write_predictions(prediction, out_path)
    n = int(prediction.mask.shape[0])
    if as_json:
        echo_json(
            {
                "run": str(run_dir),
                "input": str(input_path),
                "out": str(out_path),
                "series": n,
            }
        )
    else:
        click.echo(f"wrote {n} predictions ({what} of {input_path}) to {out_path}")


COMMANDS = (train, eval_, predict)
