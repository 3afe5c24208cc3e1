"""Speed-up of data-parallel training over processes on one machine.

The case is the LTC on an AutoNCP(256, 8) wiring with the sparse synapse
kernel, 16 inputs, sequences of 32 steps and a global batch of 16: one
compiled ``make_train_step`` (forward, backward, Adam) per step. It runs

- in one process on the whole batch of 16,
- in two processes (ring backend on 127.0.0.1), each on its 8 series, the
  gradients summed with ``mx.distributed.all_sum``,
- in one process on a batch of 8: the compute of one shard alone, so the
  difference to the two-process step is the cost of the collectives and of
  sharing the machine.

The three are started in turn, ``--repeats`` times, so load from other work
falls on all of them alike; per-step times after warm-up are pooled and
medians reported. In the two-process runs a step is the slower of the two
ranks. MLX runs one compute thread a process on this CPU, so two processes
can at best halve the time on two idle cores.

    python benchmarks/bench_distributed.py --out benchmarks/results/distributed.json
    python benchmarks/bench_distributed.py --smoke      # tiny, correctness only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from ncp_core.classic import AutoNCP
from ncp_core.distributed import init_from_env, launch_local
from ncp_core.rnn import LTC
from ncp_core.training import make_train_step

ROOT = Path(__file__).resolve().parent.parent
UNITS, OUTPUTS, INPUTS, LENGTH, BATCH = 256, 8, 16, 32, 16
SMOKE = {"units": 24, "outputs": 4, "inputs": 3, "length": 4, "batch": 4}


def _mse(model: Any, x: mx.array, y: mx.array) -> mx.array:
    readout, _ = model(x)
    return mx.mean(mx.square(readout - y))


def worker(args: argparse.Namespace) -> None:
    """One rank: time ``--steps`` training steps on its shard of the batch."""
    dp = init_from_env()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.length, args.inputs), np.float32)
    y = rng.standard_normal((args.batch, args.length, args.outputs), np.float32)
    index = dp.shard(np.arange(args.batch))
    x_shard, y_shard = mx.array(x[index]), mx.array(y[index])

    mx.random.seed(0)
    model = LTC(args.inputs, AutoNCP(args.units, args.outputs, seed=1), kernel="sparse")
    mx.eval(model.parameters())
    optimizer = optim.Adam(learning_rate=1e-3)
    step = make_train_step(
        model, optimizer, _mse, average_gradients=dp.average_gradients
    )

    times = []
    losses = []
    for number in range(args.warmup + args.steps):
        with dp.waiting(f"step {number}"):
            started = time.perf_counter()
            loss = step(x_shard, y_shard)
            seconds = time.perf_counter() - started
        losses.append(float(loss.item()))
        if number >= args.warmup:
            times.append(seconds)

    collective = []
    if dp.is_distributed:
        grads = {k: mx.zeros_like(v) for k, v in tree_flatten(model.parameters())}
        for _ in range(args.steps):
            started = time.perf_counter()
            with dp.waiting("timing the collective"):
                mx.eval(dp.average_gradients(grads))
            collective.append(time.perf_counter() - started)

    record = {
        "rank": dp.rank,
        "size": dp.size,
        "shard": int(index.size),
        "times": times,
        "collective": collective,
        "losses": losses,
        "synapses": int(model.synapse_count),
        "parameters": int(
            sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
        ),
    }
    Path(args.worker).joinpath(f"rank{dp.rank}.json").write_text(json.dumps(record))


def _launch(args: argparse.Namespace, size: int, batch: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            folder,
            "--batch",
            str(batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            *(f"--{k}={v}" for k, v in _sizes(args).items() if k != "batch"),
        ]
        env = {"PYTHONPATH": str(ROOT), "NCP_DISABLE_PLUGINS": "1"}
        results = launch_local(command, size, env=env, cwd=ROOT, timeout=600)
        for result in results:
            if result.returncode != 0:
                raise SystemExit(
                    f"rank {result.rank} of {size} failed ({result.returncode}):\n"
                    f"{result.stderr[-3000:]}"
                )
        return [
            json.loads(Path(folder, f"rank{r}.json").read_text()) for r in range(size)
        ]


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    if args.smoke:
        return dict(SMOKE)
    return {
        "units": args.units,
        "outputs": args.outputs,
        "inputs": args.inputs,
        "length": args.length,
        "batch": args.batch,
    }


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps a run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--units", type=int, default=UNITS)
    parser.add_argument("--outputs", type=int, default=OUTPUTS)
    parser.add_argument("--inputs", type=int, default=INPUTS)
    parser.add_argument("--length", type=int, default=LENGTH)
    parser.add_argument("--batch", type=int, default=BATCH)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.smoke:
        args.repeats, args.steps, args.warmup = 1, 2, 1

    sizes = _sizes(args)
    batch = sizes["batch"]
    pooled: dict[str, list[float]] = {"one": [], "two": [], "half": []}
    collective: list[float] = []
    first_losses: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    info: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, size, global_batch in (
            ("one", 1, batch),
            ("two", 2, batch),
            ("half", 1, batch // 2),
        ):
            ranks = _launch(args, size, global_batch)
            per_step = np.max([r["times"] for r in ranks], axis=0)
            pooled[name].extend(per_step.tolist())
            collective.extend(t for r in ranks for t in r["collective"])
            first_losses.setdefault(name, ranks[0]["losses"][0])
            info = {"synapses": ranks[0]["synapses"], "params": ranks[0]["parameters"]}
            load.append(os.getloadavg()[0])

    one, two, half = (_median_ms(pooled[k]) for k in ("one", "two", "half"))
    result = {
        "benchmark": "bench_distributed",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "case": {
            "cell": "ltc",
            "wiring": f"AutoNCP({sizes['units']}, {sizes['outputs']})",
            "kernel": "sparse",
            "global_batch": batch,
            "length": sizes["length"],
            "inputs": sizes["inputs"],
            "step": "make_train_step: forward, backward, Adam (compiled)",
            **info,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "mlx": mx.__version__,
            "load_average_1min": [round(v, 2) for v in load],
            "note": "shared with other work while measured; medians quoted",
        },
        "repeats": args.repeats,
        "timed_steps_per_run": args.steps,
        "median_step_ms": {
            "one_process_batch_16": one,
            "two_processes_8_each": two,
            "one_process_batch_8": half,
        },
        "median_gradient_all_sum_ms": _median_ms(collective) if collective else None,
        "speedup_two_over_one": round(one / two, 3),
        "ideal_speedup": round(one / half, 3),
        "first_loss": first_losses,
        "command": shlex.join(["python", "benchmarks/bench_distributed.py", *argv]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
