"""Data-parallel training over mlx.distributed: sharding, collectives, failures.

The multi-process tests start real ranks of the ring backend on 127.0.0.1
(``MLX_RANK`` plus a hostfile of free loopback ports) and judge each rank by
its own exit status and output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from ncp_core.distributed import (
    TIMEOUT_VARIABLE,
    WATCHDOG_EXIT,
    DataParallel,
    DistributedError,
    init_from_env,
    launch_local,
    launched,
    loopback_hostfile,
    metrics_from_statistics,
    score_statistics,
    shard,
    shard_share,
)
from ncp_core.metrics import classification_metrics, regression_metrics

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
LAUNCH_TIMEOUT = 60


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "NCP_DISABLE_PLUGINS": "1", **extra}


def _worker(out: Path, mode: str, size: int, **env: str):
    return launch_local(
        [sys.executable, str(WORKER), str(out), mode],
        size,
        env=_env(**env),
        cwd=ROOT,
        timeout=LAUNCH_TIMEOUT,
    )


def _weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "steps"}


# -- sharding ----------------------------------------------------------------


def test_shards_are_contiguous_runs_that_cover_the_batch_once():
    batch = np.arange(10, 17)  # 7 over 3 ranks: 3, 2, 2
    parts = [shard(batch, r, 3) for r in range(3)]

    assert [p.tolist() for p in parts] == [[10, 11, 12], [13, 14], [15, 16]]
    assert [shard(np.array([4]), r, 2).tolist() for r in range(2)] == [[4], []]


def test_shard_rejects_a_rank_outside_the_group():
    with pytest.raises(DistributedError, match="rank 2 is outside a group of size 2"):
        shard(np.arange(4), 2, 2)


def test_shares_weight_the_shard_means_into_the_global_mean():
    losses = np.random.default_rng(0).normal(size=7)
    parts = [shard(np.arange(7), r, 3) for r in range(3)]

    combined = sum(shard_share(p.size, 7) * losses[p].mean() for p in parts if p.size)

    assert combined == pytest.approx(losses.mean(), rel=1e-12)
    assert shard_share(0, 7) == 0.0
    assert shard_share(0, 0) == 0.0


# -- one process ---------------------------------------------------------------


def test_alone_every_collective_is_the_identity():
    dp = init_from_env(distributed=False)
    grads = {"w": mx.array([1.0, -2.0])}

    assert (dp.rank, dp.size, dp.is_writer, dp.is_distributed) == (0, 1, True, False)
    assert dp.average_gradients(grads, 0.5) is grads
    assert dp.sum_gradients(grads) is grads
    assert dp.broadcast(grads) is grads
    assert dp.shard(np.arange(5)).tolist() == [0, 1, 2, 3, 4]
    assert dp.sum_arrays({"n": np.array([3])})["n"].tolist() == [3]
    assert dp.any(True) and not dp.any(False)


def test_alone_check_peers_raises_the_error_itself():
    dp = DataParallel(None)
    dp.check_peers(None)
    with pytest.raises(KeyError, match="lost"), dp.guard():
        raise KeyError("lost")


def test_distributed_flag_without_a_launcher_says_how_to_launch(monkeypatch):
    for name in ("MLX_RANK", "MLX_HOSTFILE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)

    assert init_from_env().size == 1
    with pytest.raises(DistributedError, match="mlx.launch"):
        init_from_env(distributed=True)


def test_a_launch_of_one_process_trains_alone(monkeypatch, tmp_path):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MLX_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "hosts.json"
    empty.write_text("\n")  # what `mlx.launch -n 1` writes
    monkeypatch.setenv("MLX_RANK", "0")
    monkeypatch.setenv("MLX_HOSTFILE", str(empty))
    assert not launched()
    assert init_from_env().size == 1

    empty.write_text(json.dumps(loopback_hostfile(2)))
    assert launched()


def test_bad_timeout_variable_is_named_with_its_value(monkeypatch):
    monkeypatch.setenv(TIMEOUT_VARIABLE, "soon")
    with pytest.raises(DistributedError, match="NCP_DISTRIBUTED_TIMEOUT='soon'"):
        init_from_env(distributed=False)
    monkeypatch.setenv(TIMEOUT_VARIABLE, "2.5")
    assert init_from_env(distributed=False).timeout == 2.5


def test_loopback_hostfile_lists_distinct_local_ports():
    hosts = loopback_hostfile(3)

    assert all(len(h) == 1 and h[0].startswith("127.0.0.1:") for h in hosts)
    assert len({h[0] for h in hosts}) == 3


# -- metrics over a split shared by the ranks ----------------------------------


def test_summed_statistics_of_shards_give_the_classification_metrics():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(11, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 11)
    parts = [shard(np.arange(11), r, 3) for r in range(3)]

    stats = [
        score_statistics("classification", logits[p], labels[p], num_classes=3)
        for p in parts
    ]
    summed = {k: sum(s[k] for s in stats) for k in stats[0]}
    metrics = metrics_from_statistics("classification", summed)

    expected = classification_metrics(labels, logits.argmax(-1), 3)
    shifted = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    assert metrics["loss"] == pytest.approx(-log_p[np.arange(11), labels].mean())
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert metrics["f1"] == pytest.approx(expected["f1"])
    assert metrics["n"] == 11


def test_summed_statistics_of_shards_give_the_per_step_regression_metrics():
    rng = np.random.default_rng(2)
    out = rng.normal(size=(5, 4, 2))
    y = rng.normal(size=(5, 4, 2))
    mask = np.arange(4)[None, :] < np.array([4, 1, 2, 3, 4])[:, None]

    def inverse(v):
        return np.asarray(v) * 10.0 + 100.0

    stats = [
        score_statistics(
            "regression", out[p], y[p], mask=mask[p], per_step=True, inverse=inverse
        )
        for p in (np.arange(0, 3), np.arange(3, 5), np.arange(0))
    ]
    summed = {k: sum(s[k] for s in stats) for k in stats[0]}
    metrics = metrics_from_statistics("regression", summed)

    expected = regression_metrics(inverse(y), inverse(out), mask)
    weight = mask[..., None]
    loss = np.sum(np.square(out - y) * weight) / (weight.sum() * 2)
    assert metrics["loss"] == pytest.approx(loss)
    for key in ("mse", "rmse", "mae"):
        assert metrics[key] == pytest.approx(expected[key])
    assert metrics["n"] == expected["n"] == 2 * mask.sum()


# -- several processes on 127.0.0.1 --------------------------------------------


def test_the_local_launcher_exits_with_the_status_of_a_failed_rank(capsys):
    from ncp_core.distributed import _main

    code = "import os, sys; print('hi'); sys.exit(5 * int(os.environ['MLX_RANK']))"
    status = _main(["-n", "2", "--", sys.executable, "-c", code])

    assert status == 5
    out, err = capsys.readouterr()
    assert out == "hi\nhi\n"
    assert "rank 1 exited with 5" in err and "rank 0 exited" not in err


def test_two_ranks_reach_the_weights_of_one_process_on_the_global_batches(tmp_path):
    single = _worker(tmp_path / "one", "train", 1)
    assert single[0].returncode == 0, single[0].stderr
    assert "rank 0 of 1: 8 steps" in single[0].stdout

    ranks = _worker(tmp_path / "two", "train", 2)
    for result in ranks:
        assert result.returncode == 0, result.stderr
        assert f"rank {result.rank} of 2: 8 steps" in result.stdout

    reference = _weights(tmp_path / "one" / "rank0-of-1.npz")
    moved = max(float(np.abs(v).max()) for v in reference.values())
    assert moved > 0.1
    for rank in range(2):
        weights = _weights(tmp_path / "two" / f"rank{rank}-of-2.npz")
        assert weights.keys() == reference.keys()
        for name, value in reference.items():
            np.testing.assert_allclose(weights[name], value, atol=1e-5, err_msg=name)


def test_a_rank_that_raises_fails_every_rank_with_its_name_and_error(tmp_path):
    ranks = _worker(tmp_path, "raise", 2)

    for result in ranks:
        assert result.returncode != 0
        assert (
            "rank 1 failed: ValueError: this rank was told to fail (while step 3)"
            in result.stderr
        )
    assert not list(tmp_path.glob("*.npz"))


def test_a_rank_that_dies_stops_its_peer_with_an_error(tmp_path):
    ranks = _worker(tmp_path, "exit", 2)

    assert ranks[1].returncode == 7
    assert ranks[0].returncode == 1
    assert "rank 0 lost its connection to the other processes" in ranks[0].stderr
    assert not list(tmp_path.glob("*.npz"))


def test_the_watchdog_ends_a_rank_whose_peer_hangs(tmp_path):
    ranks = _worker(
        tmp_path, "hang", 2, **{TIMEOUT_VARIABLE: "2", "NCP_TEST_HANG": "6"}
    )

    assert ranks[0].returncode == WATCHDOG_EXIT
    assert "rank 0 waited 2 s for the other processes while step 3" in (ranks[0].stderr)


def test_a_rank_whose_peer_never_starts_gives_up_after_the_timeout(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps(loopback_hostfile(2)))
    env = {
        **os.environ,
        **_env(),
        "MLX_RANK": "0",
        "MLX_HOSTFILE": str(hostfile),
        TIMEOUT_VARIABLE: "1",
    }

    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path), "train"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
    )

    assert result.returncode != 0
    assert "Timeout" in result.stderr and "in init_from_env" in result.stderr


# -- the training loop and `ncp train` over two processes ----------------------

FIT = Path(__file__).resolve().parent / "distributed_fit.py"


def _views(results) -> list[dict]:
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]


def _assert_same_run(view: dict, reference: dict) -> None:
    assert view["test"]["confusion_matrix"] == reference["test"]["confusion_matrix"]
    assert view["test"]["accuracy"] == reference["test"]["accuracy"]
    assert view["test"]["loss"] == pytest.approx(reference["test"]["loss"], abs=1e-5)
    assert len(view["history"]) == len(reference["history"])
    for row, expected in zip(view["history"], reference["history"], strict=True):
        assert row["best"] == expected["best"]
        for key in ("loss", "accuracy", "val_loss"):
            assert row[key] == pytest.approx(expected[key], abs=1e-5), (row, key)


def test_two_ranks_fit_and_resume_like_one_uninterrupted_process(tmp_path):
    command = [sys.executable, str(FIT)]
    (single,) = _views(
        launch_local([*command, str(tmp_path / "one")], 1, env=_env(), cwd=ROOT)
    )
    ranks = _views(
        launch_local(
            [*command, str(tmp_path / "two"), "--interrupt"],
            2,
            env=_env(),
            cwd=ROOT,
            timeout=LAUNCH_TIMEOUT,
        )
    )

    assert [view["writer"] for view in ranks] == [True, False]
    assert single["test"]["accuracy"] > 0.6  # it learned something to compare
    for view in ranks:
        _assert_same_run(view, single)
    written = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert written["test"]["confusion_matrix"] == single["test"]["confusion_matrix"]


def test_a_callback_failing_on_rank_one_stops_the_fit_on_every_rank(tmp_path):
    ranks = launch_local(
        [sys.executable, str(FIT), str(tmp_path / "run"), "--fail"],
        2,
        env=_env(),
        cwd=ROOT,
        timeout=LAUNCH_TIMEOUT,
    )

    for result in ranks:
        assert result.returncode != 0
        assert result.stdout == ""
        assert (
            "rank 1 failed: RuntimeError: callback failed on purpose "
            "(while preparing step 3 of epoch 1)"
        ) in result.stderr
    assert (tmp_path / "run" / "config.json").is_file()
    assert not (tmp_path / "run" / "summary.json").exists()


def test_ncp_train_over_two_processes_writes_one_run_from_rank_zero(tmp_path):
    command = [
        *(sys.executable, "-m", "ncp_core.cli", "train"),
        *("--data", "italy_power_demand", "-p", "units=16", "--epochs", "2"),
        *("--batch-size", "16", "--lr", "0.005", "--seed", "3"),
        *("--no-plots", "--json"),
    ]
    (one,) = launch_local([*command, "--out", "one"], 1, env=_env(), cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    (tmp_path / "two").mkdir()
    ranks = launch_local(
        command, 2, env=_env(), cwd=tmp_path / "two", timeout=LAUNCH_TIMEOUT
    )

    for result in ranks:
        assert result.returncode == 0, result.stderr[-3000:]
    assert ranks[1].stdout == ""  # only rank 0 prints
    runs = list((tmp_path / "two" / "runs").iterdir())
    assert len(runs) == 1  # the default --out of rank 0; rank 1 wrote nothing
    reference = json.loads((tmp_path / "one" / "summary.json").read_text())
    summary = json.loads((runs[0] / "summary.json").read_text())
    printed = Path(json.loads(ranks[0].stdout)["path"])
    assert (tmp_path / "two" / printed).resolve() == runs[0].resolve()
    assert summary["test"]["confusion_matrix"] == reference["test"]["confusion_matrix"]
    assert summary["test"]["loss"] == pytest.approx(reference["test"]["loss"], abs=1e-5)
    assert summary["best_epoch"] == reference["best_epoch"]
    assert (runs[0] / "checkpoint").is_dir()
