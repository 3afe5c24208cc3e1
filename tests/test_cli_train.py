"""``ncp train``, ``ncp eval`` and ``ncp predict`` through the command line."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from ncp_core.cli import main
from ncp_core.data import BUNDLED, load_bundled
from ncp_core.runs import FORMAT_VERSION, RunFolder
from ncp_core.train import fit, load_run

REPO = Path(__file__).parents[1]
TINY = ["-p", "units=12", "--batch-size", "8", "--lr", "0.02", "--no-plots"]


def ncp(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit status 2, one ``Error:`` line naming the fragments, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_npz_inputs(path: Path, dataset) -> Path:
    np.savez(path, X=dataset.X_test, mask=dataset.mask_test)
    return path


# -- every bundled dataset, both cells -----------------------------------------


@pytest.mark.parametrize("cell", ["cfc", "ltc"])
@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_bundled_dataset_trains_and_reloads_to_the_same_predictions(
    tmp_path, name, cell
):
    out = tmp_path / "run"
    result = ncp(
        "train", "--data", name, "--cell", cell, "--epochs", 3,
        "--limit-train", 16, "--val-fraction", 0.25, "--out", out, "--json", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [row["epoch"] for row in RunFolder(out).read_metrics()] == [1, 2, 3]
    # The loss over the training series, without input noise: the best model
    # against the model as initialised.
    assert summary["train"]["loss"] < summary["initial"]["train_loss"]

    run = load_run(out)
    dataset = load_bundled(name)
    scores = run.evaluate(dataset)
    assert scores["accuracy"] == pytest.approx(summary["test"]["accuracy"], abs=1e-9)
    assert scores["confusion_matrix"] == summary["test"]["confusion_matrix"]

    inputs = write_npz_inputs(tmp_path / "inputs.npz", dataset)
    written = ncp("predict", out, "--input", inputs, "--out", tmp_path / "p.csv")
    assert written.exit_code == 0, written.output
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = run.predict(dataset.X_test, dataset.mask_test).labels
    assert [row["label"] for row in rows] == [str(label) for label in expected]


def test_sequence_to_sequence_regression_from_an_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 2)).astype(np.float32)
    lengths = rng.integers(3, 9, 40)
    mask = np.arange(8)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    y = (50.0 + 5.0 * np.cumsum(x[:, :, :1], axis=1)) * mask[:, :, None]
    np.savez(tmp_path / "walk.npz", X=x, y=y, mask=mask, task=np.array("regression"))
    out = tmp_path / "run"
    result = ncp(
        "train", "--data", tmp_path / "walk.npz", "--epochs", 4, "--out", out,
        "--json", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary["test"]) >= {"mse", "mae", "rmse"}
    assert summary["train"]["loss"] < summary["initial"]["train_loss"]

    np.savez(tmp_path / "inputs.npz", X=x[:3], mask=mask[:3])
    written = ncp(
        "predict", out, "--input", tmp_path / "inputs.npz", "--out", tmp_path / "y.csv"
    )
    assert written.exit_code == 0, written.output
    with open(tmp_path / "y.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["series", "step", "y"]
    assert len(rows) == int(mask[:3].sum())
    values = load_run(out).predict(x[:3], mask[:3]).values
    first = rows[0]
    assert float(first["y"]) == pytest.approx(float(values[0, 0, 0]), rel=1e-5)


# -- a run shared by the eval, predict and error tests --------------------------


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "run"
    fit(
        "japanese_vowels",
        wiring_params={"units": 12},
        epochs=2,
        limit_train=36,
        batch_size=12,
        out=out,
    )
    return out


def test_eval_prints_accuracy_f1_and_confusion_matrix(saved_run):
    result = ncp("eval", saved_run)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "macro F1" in result.stdout
    assert "confusion matrix" in result.stdout
    as_json = json.loads(ncp("eval", saved_run, "--json").stdout)
    summary = json.loads((saved_run / "summary.json").read_text())
    assert as_json["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert np.array(as_json["confusion_matrix"]).sum() == 370


def test_predict_writes_labels_and_probabilities_as_npz(saved_run, tmp_path):
    dataset = load_bundled("japanese_vowels")
    inputs = write_npz_inputs(tmp_path / "x.npz", dataset)
    result = ncp("predict", saved_run, "--input", inputs, "--out", tmp_path / "p.npz")
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "p.npz") as written:
        probabilities = written["probabilities"]
        labels = written["labels"].tolist()
        classes = written["classes"].tolist()
    assert probabilities.shape == (370, 9)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert labels == [classes[i] for i in probabilities.argmax(axis=1)]


def test_predict_reads_a_test_split_file_on_its_own(saved_run, tmp_path):
    source = REPO / "ncp_core/data/bundled/JapaneseVowels_TEST.ts.gz"
    (tmp_path / "Jv_TEST.ts.gz").write_bytes(source.read_bytes())
    out = tmp_path / "p.csv"
    result = ncp(
        "predict", saved_run, "--input", tmp_path / "Jv_TEST.ts.gz", "--out", out
    )
    assert result.exit_code == 0, result.output
    dataset = load_bundled("japanese_vowels")
    expected = load_run(saved_run).predict(dataset.X_test, dataset.mask_test)
    with open(out, newline="") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    assert labels == [str(label) for label in expected.labels]


def test_predict_input_with_other_channels(saved_run, tmp_path):
    source = REPO / "ncp_core/data/bundled/ItalyPowerDemand_TEST.ts.gz"
    result = ncp("predict", saved_run, "--input", source, "--out", tmp_path / "p.csv")
    assert_user_error(result, "(n, L, 12)")


def test_predict_into_a_missing_folder_is_a_clear_error(saved_run, tmp_path):
    inputs = write_npz_inputs(tmp_path / "x.npz", load_bundled("japanese_vowels"))
    missing = tmp_path / "nowhere" / "p.csv"
    result = ncp("predict", saved_run, "--input", inputs, "--out", missing)
    assert_user_error(result, "does not exist")
    assert not missing.parent.exists()


def test_predict_does_not_overwrite_an_existing_file(saved_run, tmp_path):
    inputs = write_npz_inputs(tmp_path / "x.npz", load_bundled("japanese_vowels"))
    target = tmp_path / "p.csv"
    target.write_text("precious")
    assert_user_error(
        ncp("predict", saved_run, "--input", inputs, "--out", target), "--force"
    )
    assert target.read_text() == "precious"
    forced = ncp("predict", saved_run, "--input", inputs, "--out", target, "--force")
    assert forced.exit_code == 0
    assert target.read_text().startswith("series,label,p_1,")


# -- resume after a real kill ----------------------------------------------------

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from ncp_core.train import Callback, fit

    where, when = sys.argv[1], sys.argv[2]

    class Kill(Callback):
        def on_checkpoint(self, run, epoch, path):
            if when == "after-checkpoint-2" and epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        def on_step_end(self, run, step, logs):
            if when == "inside-epoch-3" and logs["epoch"] == 3 and step == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    fit("japanese_vowels", wiring_params={"units": 12}, epochs=4, limit_train=40,
        batch_size=8, seed=5, plots=False, out=where, callbacks=[Kill()])
    """
)
KILL_SETTINGS = {
    "wiring_params": {"units": 12},
    "epochs": 4,
    "limit_train": 40,
    "batch_size": 8,
    "seed": 5,
    "plots": False,
}


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    return fit(
        "japanese_vowels",
        out=tmp_path_factory.mktemp("straight") / "run",
        **KILL_SETTINGS,
    )


@pytest.mark.parametrize("when", ["after-checkpoint-2", "inside-epoch-3"])
def test_sigkilled_run_resumes_to_the_weights_of_an_uninterrupted_one(
    tmp_path, when, straight_run
):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(out), when],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr.decode()
    folder = RunFolder(out)
    assert folder.read_checkpoint_state()["epoch"] == 2
    assert len(folder.read_metrics()) == 2
    assert not (out / "summary.json").exists()

    result = ncp("train", "--resume", out, "--quiet")
    assert result.exit_code == 0, result.output

    _, resumed_last, _, _ = folder.read_checkpoint()
    _, straight_last, _, _ = RunFolder(straight_run.path).read_checkpoint()
    for key, value in straight_last.items():
        assert np.abs(np.array(value) - np.array(resumed_last[key])).max() <= 1e-6
    best_resumed = folder.read_model()
    best_straight = RunFolder(straight_run.path).read_model()
    for key, value in best_straight.items():
        assert np.abs(np.array(value) - np.array(best_resumed[key])).max() <= 1e-6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["accuracy"] == straight_run.metrics["accuracy"]


def test_resume_refuses_options_that_would_change_the_run(saved_run):
    assert_user_error(
        ncp("train", "--resume", saved_run, "--lr", "0.1"), "--lr", "resuming"
    )


# -- bad input: one line, exit status 2 ------------------------------------------


def test_missing_data_file(tmp_path):
    assert_user_error(
        ncp("train", "--data", tmp_path / "gone_TRAIN.ts"),
        "gone_TRAIN.ts",
        "does not exist",
    )


def test_data_file_of_unknown_format(tmp_path):
    path = tmp_path / "series.xlsx"
    path.write_text("a,b\n")
    assert_user_error(ncp("train", "--data", path), "unknown format", ".xlsx")


def test_ts_file_with_a_broken_header(tmp_path):
    path = tmp_path / "broken.ts"
    path.write_text("@problemName broken\n@dimensions two\n@data\n1,2,3:a\n")
    assert_user_error(ncp("train", "--data", path), "@dimension", "positive integer")


def test_csv_with_a_missing_label(tmp_path):
    rows = ["a,1,2,3", "b,2,3,4", ",3,4,5", "a,1,1,1", "b,2,2,2"] * 2
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    assert_user_error(ncp("train", "--data", path), "label", "missing")


def test_infinite_value_where_no_mask_covers_it(tmp_path):
    x = np.ones((10, 5, 1), np.float32)
    x[3, 2, 0] = np.inf
    path = tmp_path / "inf.npz"
    np.savez(path, X=x, y=np.arange(10) % 2)
    assert_user_error(ncp("train", "--data", path), "inf")


def test_nan_under_an_explicit_mask_is_refused(tmp_path):
    x = np.ones((10, 5, 1), np.float32)
    x[4, 1, 0] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, X=x, y=np.arange(10) % 2, mask=np.ones((10, 5), bool))
    assert_user_error(ncp("train", "--data", path), "nan")


def test_class_present_only_in_the_test_split(tmp_path):
    (tmp_path / "Toy_TRAIN.csv").write_text("a,1,2\nb,2,3\na,1,1\nb,3,3\n")
    (tmp_path / "Toy_TEST.csv").write_text("a,1,2\nc,9,9\n")
    assert_user_error(
        ncp("train", "--data", tmp_path / "Toy_TRAIN.csv"), "'c'", "only in the test"
    )


def test_dataset_name_nobody_registered():
    assert_user_error(
        ncp("train", "--data", "japanese_vowel"), "japanese_vowel", "japanese_vowels"
    )


def test_wiring_parameter_the_wiring_does_not_accept():
    assert_user_error(
        ncp("train", "-p", "neurons=8", "--epochs", "1"), "neurons", "units"
    )


def test_out_folder_holding_another_run_is_kept_unless_forced(saved_run, tmp_path):
    before = {p.name: p.read_bytes() for p in saved_run.iterdir() if p.is_file()}
    result = ncp("train", "--out", saved_run, "--epochs", "1")
    assert_user_error(result, "already holds a run", "--resume", "--force")
    after = {p.name: p.read_bytes() for p in saved_run.iterdir() if p.is_file()}
    assert before == after

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    (other / "config.json").write_text('{"old": true}')
    forced = ncp(
        "train", "--out", other, "--force", "--epochs", 1, "--limit-train", 18,
        "--quiet", *TINY,
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert (other / "notes.txt").read_text() == "mine"
    assert json.loads((other / "config.json").read_text())["format"] == FORMAT_VERSION


def _copy_run(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "model.safetensors", "summary.json"):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_truncated_model_weights(saved_run, tmp_path):
    run = _copy_run(saved_run, tmp_path / "run")
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    assert_user_error(ncp("eval", run), "model.safetensors", "corrupt")


def test_model_weights_with_flipped_bytes(saved_run, tmp_path):
    run = _copy_run(saved_run, tmp_path / "run")
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert_user_error(ncp("eval", run), "model.safetensors", "checksum")


def test_config_from_a_newer_format(saved_run, tmp_path):
    run = _copy_run(saved_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["format"] = FORMAT_VERSION + 1
    (run / "config.json").write_text(json.dumps(config))
    assert_user_error(
        ncp("predict", run, "--input", "x.npz", "--out", tmp_path / "p.csv"),
        f"format {FORMAT_VERSION + 1}",
        "upgrade",
    )


def test_the_installed_command_reports_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "ncp_core.cli", "train", "--data", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: unknown dataset 'nope'")


def test_help_states_the_defaults_the_library_uses():
    from ncp_core.cli.train import _DEFAULTS
    from ncp_core.train import TrainingConfig

    defaults = TrainingConfig()
    assert {name: getattr(defaults, name) for name in _DEFAULTS} == _DEFAULTS
    assert set(_DEFAULTS) == {
        f.name for f in dataclasses.fields(TrainingConfig) if f.name != "limit_train"
    }
    assert "[default: 0.15]" in ncp("train", "--help").stdout


def test_a_folder_named_like_a_dataset_does_not_hide_the_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "italy_power_demand").mkdir()
    result = ncp(
        "train", "--data", "italy_power_demand", "--epochs", 1, "--limit-train", 12,
        "--out", "run", "--quiet", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run/config.json").read_text())
    assert config["data"]["kind"] == "registered"
    assert config["data"]["n_test"] == 1029
