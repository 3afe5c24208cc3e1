"""The training API: metrics, run files, data handling, fit/resume/load/predict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

import ncp.train
from ncp_core.data import SequenceDataset
from ncp_core.errors import CheckpointError, DataError, WiringError
from ncp_core.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    f1_scores,
    macro_f1,
    mean_absolute_error,
    mean_squared_error,
    regression_metrics,
)
from ncp_core.runs import (
    FORMAT_VERSION,
    RunFolder,
    atomic_write_json,
    load_safetensors,
)
from ncp_core.train import (
    Callback,
    _stratified_take,
    _validation_split,
    evaluate,
    fit,
    load_run,
    predict,
    resume,
)

SMALL = {"units": 10}
FAST = {"wiring_params": SMALL, "plots": False, "batch_size": 16}


# -- data used by the tests ----------------------------------------------------


def toy_classification(n: int = 72, length: int = 12, seed: int = 0) -> SequenceDataset:
    """Two classes told apart by the sign of channel 0; lengths vary from 5 to L."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.normal(0.0, 0.5, (n, length, 2)).astype(np.float32)
    x[:, :, 0] += np.where(labels[:, None] == 1, 1.0, -1.0)
    lengths = rng.integers(5, length + 1, n)
    mask = np.arange(length)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    names = np.array(["down", "up"])[labels]
    cut = n * 2 // 3
    return SequenceDataset(
        name="toy",
        X_train=x[:cut],
        y_train=names[:cut],
        X_test=x[cut:],
        y_test=names[cut:],
        mask_train=mask[:cut],
        mask_test=mask[cut:],
    )


def toy_regression(per_step: bool, n: int = 60, length: int = 10) -> SequenceDataset:
    """Targets in large units: 100 + 10 × the running mean of channel 0."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, (n, length, 1)).astype(np.float32)
    lengths = rng.integers(4, length + 1, n)
    mask = np.arange(length)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    running = np.cumsum(x[:, :, 0], axis=1) / np.arange(1, length + 1)
    if per_step:
        y = (100.0 + 10.0 * running)[:, :, None] * mask[:, :, None]
    else:
        y = 100.0 + 10.0 * running[np.arange(n), lengths - 1]
    cut = 40
    return SequenceDataset(
        name="toy_regression",
        X_train=x[:cut],
        y_train=y[:cut],
        X_test=x[cut:],
        y_test=y[cut:],
        mask_train=mask[:cut],
        mask_test=mask[cut:],
        task="regression",
    )


def flat_weights(model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in tree_flatten(model.parameters())}


# -- metrics -------------------------------------------------------------------


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    confusion = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_macro_f1_averages_per_class_f1_over_classes_that_occur():
    # class 0: tp 1 fp 1 fn 1 → 0.5; class 1: tp 1 fp 1 fn 0 → 2/3;
    # class 2: tp 2 fp 0 fn 1 → 0.8; class 3 never occurs and is left out.
    confusion = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert f1_scores(confusion)[:3] == pytest.approx([0.5, 2 / 3, 0.8])
    assert np.isnan(f1_scores(confusion)[3])
    assert macro_f1(confusion) == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    report = classification_metrics([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["f1"][3] is None
    assert accuracy([1, 2], [1, 1]) == 0.5


def test_regression_metrics_count_only_masked_in_entries():
    y = np.array([[[1.0], [2.0], [9.0]]])
    pred = np.array([[[2.0], [0.0], [-100.0]]])
    mask = np.array([[True, True, False]])
    assert mean_squared_error(y, pred, mask) == pytest.approx((1 + 4) / 2)
    assert mean_absolute_error(y, pred, mask) == pytest.approx((1 + 2) / 2)
    assert regression_metrics(y, pred, mask)["rmse"] == pytest.approx(np.sqrt(2.5))


# -- run files -----------------------------------------------------------------


def test_atomic_json_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": float("nan"), "b": np.float32(1.5)})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_interrupted_checkpoint_write_leaves_the_previous_checkpoint_readable(
    tmp_path,
):
    folder = RunFolder(tmp_path)
    folder.create()
    weights = {"w": mx.array([1.0, 2.0])}
    folder.write_checkpoint(1, weights, {"m": mx.zeros(2)}, {"history": []})
    # A process killed while writing epoch 2: its tensors are there (one
    # half-written, one a temporary), but state.json still names epoch 1.
    checkpoint = tmp_path / "checkpoint"
    (checkpoint / "weights-0002.safetensors").write_bytes(b"\x08\x00partial")
    (checkpoint / ".ncp-tmp-optimizer-0002.safetensors-abc.tmp").write_bytes(b"x")
    state, loaded, _, best = folder.read_checkpoint()
    assert state["epoch"] == 1
    assert loaded["w"].tolist() == [1.0, 2.0]
    assert best is None
    folder.write_checkpoint(2, {"w": mx.array([3.0, 4.0])}, {"m": mx.ones(2)}, {})
    names = sorted(p.name for p in checkpoint.iterdir())
    assert names == [
        "optimizer-0002.safetensors",
        "state.json",
        "weights-0002.safetensors",
    ]


def test_truncated_or_altered_safetensors_is_a_checkpoint_error(tmp_path):
    folder = RunFolder(tmp_path)
    folder.create()
    digest = folder.write_model({"w": mx.arange(100, dtype=mx.float32)})
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_safetensors(path, "model weights")
    path.write_bytes(data[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(CheckpointError, match="checksum"):
        load_safetensors(path, "model weights", sha256=digest)


def test_config_of_a_newer_format_is_refused(tmp_path):
    atomic_write_json(tmp_path / "config.json", {"format": FORMAT_VERSION + 1})
    with pytest.raises(CheckpointError, match=f"format {FORMAT_VERSION + 1}"):
        RunFolder(tmp_path).read_config()


def test_new_run_refuses_a_folder_holding_a_run_unless_forced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="already holds a run"):
        RunFolder(tmp_path).create()
    RunFolder(tmp_path).create(force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- data handling -------------------------------------------------------------


def test_validation_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat([0, 1, 2], [20, 10, 1])
    train, val = _validation_split(labels, labels.size, 0.2, seed=7)
    again, _ = _validation_split(labels, labels.size, 0.2, seed=7)
    other, _ = _validation_split(labels, labels.size, 0.2, seed=8)
    assert np.bincount(labels[val], minlength=3).tolist() == [4, 2, 0]
    assert np.intersect1d(train, val).size == 0
    assert train.size + val.size == labels.size
    assert np.array_equal(train, again)
    assert not np.array_equal(train, other)


def test_limit_train_keeps_class_proportions_exactly():
    labels = np.repeat([0, 1], [60, 30])
    taken = _stratified_take(labels, labels.size, 30, np.random.default_rng(0))
    assert np.bincount(labels[taken]).tolist() == [20, 10]
    assert np.unique(taken).size == 30


# -- fit, load, predict --------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> ncp.train.Run:
    out = tmp_path_factory.mktemp("runs") / "toy"
    return fit(
        toy_classification(),
        epochs=6,
        lr=0.03,
        out=out,
        **{**FAST, "plots": True},
    )


def test_fit_learns_a_separable_toy_task(trained):
    losses = [row["loss"] for row in trained.history]
    assert losses[-1] < 0.7 * losses[0]
    assert trained.metrics["accuracy"] >= 0.9
    assert trained.classes == ["down", "up"]


def test_run_folder_holds_config_weights_checkpoint_metrics_and_plots(trained):
    path = trained.path
    names = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "checkpoint",
        "metrics.jsonl",
        "summary.json",
        "learning_curves.png",
        "wiring.png",
        "confusion_matrix.png",
    } <= names
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == FORMAT_VERSION
    assert config["classes"] == ["down", "up"]
    assert config["wiring"]["name"] == "auto_ncp"
    assert config["wiring"]["plugin"] == "classic"
    assert np.array(config["wiring"]["adjacency"]).shape == (10, 10)
    assert len(config["standardizer"]["mean"]) == 2
    assert config["training"]["epochs"] == 6
    lines = (path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))
    assert (path / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_loaded_run_predicts_exactly_like_the_trained_one(trained):
    data = toy_classification()
    again = load_run(trained.path)
    first = predict(trained, data.X_test, data.mask_test)
    second = again.predict(data.X_test, data.mask_test)
    np.testing.assert_allclose(first.probabilities, second.probabilities, atol=1e-6)
    assert first.labels == second.labels
    assert set(first.labels) <= {"down", "up"}
    assert evaluate(again, data)["accuracy"] == pytest.approx(
        trained.metrics["accuracy"]
    )


def test_padding_after_a_series_does_not_change_its_prediction(trained):
    data = toy_classification()
    i = int(np.argmin(data.mask_test.sum(axis=1)))
    length = int(data.mask_test[i].sum())
    alone = predict(trained, data.X_test[i : i + 1, :length])
    padded = np.zeros((1, 40, 2), np.float32)
    padded[0, :length] = data.X_test[i, :length]
    mask = np.arange(40)[None, :] < length
    inside = predict(trained, padded, mask=mask)
    np.testing.assert_allclose(alone.probabilities, inside.probabilities, atol=1e-5)


def test_nan_steps_count_as_missing_and_inf_is_refused(trained):
    data = toy_classification()
    x = data.X_test[:2].copy()
    x[~data.mask_test[:2]] = np.nan
    nan_padded = predict(trained, x)
    masked = predict(trained, data.X_test[:2], data.mask_test[:2])
    np.testing.assert_allclose(
        nan_padded.probabilities, masked.probabilities, atol=1e-6
    )
    x[0, 0, 0] = np.inf
    with pytest.raises(DataError, match="inf"):
        predict(trained, x)


def test_inputs_with_other_channels_are_refused(trained):
    with pytest.raises(DataError, match=r"\(n, L, 2\)"):
        predict(trained, np.zeros((3, 5, 4), np.float32))


# -- regression ----------------------------------------------------------------


@pytest.mark.parametrize("per_step", [False, True], ids=["to_label", "to_sequence"])
def test_regression_reports_metrics_in_the_units_of_the_targets(per_step):
    data = toy_regression(per_step)
    run = fit(data, epochs=8, lr=0.03, val_fraction=0.0, **FAST)
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    prediction = run.predict(data.X_test, data.mask_test)
    if per_step:
        assert prediction.values.shape == (20, 10, 1)
        mask = data.mask_test
        errors = (prediction.values - data.y_test)[mask]
    else:
        assert prediction.values.shape == (20, 1)
        errors = prediction.values[:, 0] - data.y_test
    metrics = run.metrics
    assert metrics["mse"] == pytest.approx(float(np.mean(errors**2)), rel=1e-4)
    assert metrics["mae"] == pytest.approx(float(np.mean(np.abs(errors))), rel=1e-4)
    # A model that learned nothing would sit near the variance of the targets.
    target = data.y_test[mask] if per_step else data.y_test
    assert metrics["mse"] < np.var(target)


# -- resume, callbacks, early stopping -----------------------------------------


def test_two_epochs_then_resume_ends_with_the_weights_of_four_straight(tmp_path):
    data = toy_classification()
    settings = {"epochs": 4, "lr": 0.02, "seed": 3, "compile": True, **FAST}
    straight = fit(data, out=tmp_path / "straight", **settings)
    cut = fit(data, out=tmp_path / "cut", stop_after_epochs=2, **settings)
    assert len(cut.history) == 2
    state = json.loads((tmp_path / "cut/checkpoint/state.json").read_text())
    assert state["epoch"] == 2 and not state["finished"]
    resumed = resume(tmp_path / "cut", data=data, compile=True)
    a, b = flat_weights(straight.model), flat_weights(resumed.model)
    assert a.keys() == b.keys()
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) <= 1e-6
    _, last_a, _, _ = RunFolder(tmp_path / "straight").read_checkpoint()
    _, last_b, _, _ = RunFolder(tmp_path / "cut").read_checkpoint()
    assert max(float(mx.abs(last_a[k] - last_b[k]).max()) for k in last_a) <= 1e-6
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]


def test_resume_refuses_different_data(tmp_path):
    fit(toy_classification(), epochs=2, out=tmp_path, stop_after_epochs=1, **FAST)
    with pytest.raises(DataError, match="not the data"):
        resume(tmp_path, data=toy_classification(seed=5))


class Recorder(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at = stop_at

    def on_train_begin(self, run):
        self.events.append(("begin",))

    def on_step_end(self, run, step, logs):
        self.events.append(("step", logs["epoch"], step, logs["steps"]))

    def on_epoch_end(self, run, epoch, logs):
        self.events.append(("epoch", epoch, round(logs["loss"], 6)))
        if epoch == self.stop_at:
            run.stop_training = True

    def on_train_end(self, run, logs):
        self.events.append(("end", logs["epochs_run"]))


def test_callbacks_see_every_step_and_can_stop_training():
    recorder = Recorder(stop_at=2)
    run = fit(toy_classification(), epochs=5, callbacks=[recorder], **FAST)
    # 48 train series, 10% validation → 44 training series, 3 batches of 16.
    steps = [e for e in recorder.events if e[0] == "step"]
    expected = [(epoch, step, 3) for epoch in (1, 2) for step in (1, 2, 3)]
    assert [s[1:] for s in steps] == expected
    epochs = [e for e in recorder.events if e[0] == "epoch"]
    assert [e[2] for e in epochs] == [round(r["loss"], 6) for r in run.history]
    assert recorder.events[0] == ("begin",) and recorder.events[-1] == ("end", 2)
    assert run.summary["status"] == "stopped_early"


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience(tmp_path):
    # Random labels: the validation loss can only get worse once the model
    # starts memorising the training series.
    data = toy_classification(n=60)
    rng = np.random.default_rng(0)
    data.y_train = rng.permutation(data.y_train)
    run = fit(
        data, epochs=60, lr=0.05, patience=3, val_fraction=0.3, out=tmp_path, **FAST
    )
    assert len(run.history) == run.best_epoch + 3 < 60
    val = [row["val_loss"] for row in run.history]
    assert min(val) == val[run.best_epoch - 1]
    saved = RunFolder(tmp_path).read_model()
    best = flat_weights(run.model)
    assert all(np.array_equal(best[k], np.array(saved[k])) for k in best)


# -- bad input -----------------------------------------------------------------


def test_unknown_cell_mode_and_wiring_parameter_are_wiring_errors():
    data = toy_classification()
    with pytest.raises(WiringError, match="unknown cell 'gru'"):
        fit(data, cell="gru")
    with pytest.raises(WiringError, match="unknown mode"):
        fit(data, mode="fast")
    with pytest.raises(WiringError, match="no parameter 'unit'"):
        fit(data, wiring_params={"unit": 8})


def test_a_class_left_without_training_series_is_reported():
    data = toy_classification()
    with pytest.raises(DataError, match="limit-train"):
        fit(data, limit_train=1, **FAST)


def test_load_run_of_a_folder_without_run_names_the_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape("config.json is missing")):
        load_run(tmp_path)


# -- the documented example ----------------------------------------------------


def test_the_notebook_example_in_docs_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "ncp.train.fit(" in b)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "docs/training.md", "exec"), namespace)
    run = namespace["run"]
    assert (tmp_path / "runs").is_dir()
    assert run.metrics["accuracy"] > 0.5
    assert len(namespace["prediction"].labels) == len(namespace["data"].X_test)


def test_the_summary_says_which_kernels_trained_the_model(monkeypatch):
    from ncp_core import native

    run = fit(toy_classification(), epochs=1, **FAST)
    expected = "native" if native.available("cfc") else "mlx"
    assert run.summary["kernels"] == expected and run.summary["compiled"] is False
    monkeypatch.setenv("NCP_NATIVE", "0")
    assert fit(toy_classification(), epochs=1, **FAST).summary["kernels"] == "mlx"
