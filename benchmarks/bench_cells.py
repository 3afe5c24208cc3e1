"""Training and inference speed of the cells: ncp (MLX) against ncps 1.0.1.

Every training case is one forward pass, backward pass and Adam step over
random data, with the same shapes and the same synapses in both libraries:
ours through ``make_train_step`` (uncompiled on the native CPU kernels of
:mod:`ncp_core.native`, compiled with ``mx.compile`` on the MLX kernels),
the reference (PyTorch on the
CPU, ``torch.set_num_threads`` left at its default unless
``--reference-threads`` is given) with ``torch.optim.Adam``. After warm-up the
two are timed alternately, one step each per repeat, and medians are
reported, so load from other processes falls on both alike. Peak memory is
measured in a fresh worker process per case and library
(``_cells_worker.py``): the growth of its ``ru_maxrss`` over its baseline
after imports.

The *floor* is the measured cost of one fused ``w · σ(s (v − μ))``
(accumulated into a numerator and a denominator) on this machine, in C with
the native kernel's vectorised logistic function and threads, without its
index look-ups, times the synapse evaluations the case needs; LTC times are
also given as multiples of it. The same expression compiled by MLX is timed
too, for context. Results go to JSON (``--out``) and a table; every
target of the performance issue is printed as met or not met.

    pip install -e '.[reference]'
    python benchmarks/bench_cells.py --out benchmarks/results/cells.json
    python benchmarks/bench_cells.py --quick            # fewer repeats
    python benchmarks/bench_cells.py --smoke --out x.json   # tiny, correctness only
    python benchmarks/bench_cells.py --render benchmarks/results/cells.json
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import datetime
import gc
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np

from ncp_core import native
from ncp_core.cells import LTCCell, WiredCfCCell
from ncp_core.cells import synapses as syn
from ncp_core.classic import AutoNCP
from ncp_core.rnn import LTC, CfC
from ncp_core.training import make_train_step

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_cells_worker.py"
GIB = 1 << 30
MIB = 1 << 20
REFERENCE_LIMIT_GIB = 16
NOT_RUN_OOM = "not run: exhausts memory (use --reference-oom)"


# -- cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    ``kind`` is ``"train"`` (forward, backward and Adam step over a sequence)
    or ``"inference"`` (one cell step, no gradient). ``comparator`` is what
    ours is measured against: ``"reference"`` (ncps), ``"dense"`` (our own
    dense synapse kernel on the same model) or ``None``. ``reference`` is
    ``"run"``, or ``"oom"`` for a case the reference cannot fit in memory.
    """

    name: str
    cell: str
    wiring: str
    units: int
    outputs: int
    batch: int
    length: int
    inputs: int
    kind: str = "train"
    comparator: str | None = "reference"
    reference: str = "run"
    dense_batch: int = 1
    frame: int = 28

    @property
    def label(self) -> str:
        if self.wiring == "vision":
            graph = f"vision {self.frame}x{self.frame} (4, 8)"
        else:
            graph = f"AutoNCP({self.units}, {self.outputs})"
        step = " cell step" if self.kind == "inference" else ""
        return f"{self.cell.upper().replace('CFC', 'CfC')}{step} {graph}"

    @property
    def sizes(self) -> str:
        return f"B{self.batch} L{self.length} F{self.inputs}"


def _auto_ncp(
    name: str,
    cell: str,
    units: int,
    outputs: int,
    batch: int,
    length: int,
    **options: Any,
) -> Case:
    return Case(name, cell, "auto_ncp", units, outputs, batch, length, 16, **options)


def _vision(name: str, cell: str, **options: Any) -> Case:
    return Case(name, cell, "vision", 0, 10, 16, 8, 28 * 28, **options)


CASES: tuple[Case, ...] = (
    _auto_ncp("cfc_autoncp64", "cfc", 64, 8, 64, 64),
    _auto_ncp("ltc_autoncp64", "ltc", 64, 8, 64, 64),
    _auto_ncp("ltc_autoncp256", "ltc", 256, 8, 16, 32),
    _auto_ncp("ltc_autoncp1024", "ltc", 1024, 8, 16, 32, reference="oom"),
    _vision("ltc_vision", "ltc", comparator="dense"),
    _vision("cfc_vision", "cfc", comparator=None),
    # the size of the network that steered a car (Lechner et al., 2020)
    _auto_ncp("ltc_step19", "ltc", 19, 4, 1, 1, kind="inference"),
    _auto_ncp("cfc_step19", "cfc", 19, 4, 1, 1, kind="inference"),
)

SMOKE_BATCH = 2
SMOKE_LENGTH = 3
SMOKE_UNITS = 24
SMOKE_FRAME = 8


def smoke_case(case: Case) -> Case:
    """``case`` at the tiny sizes of ``--smoke``: batch 2, length 3, at most
    24 neurons for an AutoNCP, 8×8 frames for the vision wiring."""
    tiny = dataclasses.replace(
        case,
        batch=min(case.batch, SMOKE_BATCH),
        length=min(case.length, SMOKE_LENGTH),
    )
    if case.wiring == "vision":
        return dataclasses.replace(tiny, frame=SMOKE_FRAME, inputs=SMOKE_FRAME**2)
    return dataclasses.replace(tiny, units=min(case.units, SMOKE_UNITS))


def case_by_name(name: str, smoke: bool = False) -> Case:
    for case in CASES:
        if case.name == name:
            return smoke_case(case) if smoke else case
    raise KeyError(f"no benchmark case {name!r}; cases: {[c.name for c in CASES]}")


# -- wirings and models ------------------------------------------------------


class WiringUnavailable(RuntimeError):
    """The wiring of a case cannot be built here (its plugin is missing)."""


def build_wiring(case: Case) -> Any:
    """A fresh wiring of ``case``, built for its inputs (seeded: every call
    gives the same graph)."""
    if case.wiring == "auto_ncp":
        wiring = AutoNCP(case.units, case.outputs)
    elif case.wiring == "vision":
        try:
            from ncp_core.plugins import get_wiring

            wiring = get_wiring(
                "vision",
                input_height=case.frame,
                input_width=case.frame,
                channels=1,
                layer_channels=(4, 8),
                output_size=case.outputs,
            )
        except Exception as error:  # any failure means: plugin not usable yet
            raise WiringUnavailable(
                f"the 'vision' wiring is not available ({type(error).__name__}: "
                f"{error}); install plugins/ncp-wiring-vision"
            ) from error
    else:
        raise ValueError(f"unknown wiring kind {case.wiring!r}")
    wiring.build(case.inputs)
    return wiring


def reference_wiring(wiring: Any) -> Any:
    """An ``ncps`` wiring with exactly our synapses, polarities and layers.

    The reference's own ``AutoNCP`` draws a different graph from the same
    seed, and its ``build`` adds synapses again when a model rebuilds it, so
    the graph is copied into a plain ``ncps.wirings.Wiring`` instead.
    """
    import ncps.wirings

    class CopiedWiring(ncps.wirings.Wiring):
        def __init__(self) -> None:
            super().__init__(wiring.units)
            self.set_input_dim(wiring.input_dim)
            self.set_output_dim(wiring.output_dim)
            self.adjacency_matrix = np.asarray(wiring.adjacency, np.int32).copy()
            self.sensory_adjacency_matrix = np.asarray(
                wiring.sensory_adjacency, np.int32
            ).copy()
            self._layers = [[int(i) for i in ids] for ids in wiring.layers] or [
                list(range(wiring.units))
            ]

        @property
        def num_layers(self) -> int:
            return len(self._layers)

        def get_neurons_of_layer(self, layer_id: int) -> list[int]:
            return self._layers[layer_id]

    return CopiedWiring()


def ncp_model(case: Case, wiring: Any, kernel: str = "auto") -> nn.Module:
    if case.cell == "ltc":
        return LTC(case.inputs, wiring, kernel=kernel)
    return CfC(case.inputs, wiring)


def _random_batch(case: Case, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, case.length, case.inputs), dtype=np.float32)
    y = rng.standard_normal((batch, case.length, case.outputs), dtype=np.float32)
    return x, y


def _mse(model: nn.Module, x: mx.array, y: mx.array) -> mx.array:
    readout, _ = model(x)
    return mx.mean((readout - y) ** 2)


@dataclass
class Runner:
    """A zero-argument callable that does one unit of work and blocks until
    it is done, with what describes it."""

    run: Callable[[], float]
    info: dict[str, Any]
    forward: Callable[[], None] | None = None


def _kernel_name(module: nn.Module) -> str | None:
    """``"native"`` where the module runs on the native kernels, else its
    MLX synapse kernel (``"dense"``/``"sparse"``) or None (CfC)."""
    if any(getattr(m, "uses_native", False) for _, m in module.named_modules()):
        return "native"
    return getattr(module, "kernel", None)


def ncp_train_runner(case: Case, kernel: str = "auto", batch: int | None = None):
    """Our compiled training step (and an eager forward pass) for ``case``."""
    batch = case.batch if batch is None else batch
    mx.random.seed(0)
    model = ncp_model(case, build_wiring(case), kernel)
    optimizer = optim.Adam(learning_rate=1e-3)
    step = make_train_step(model, optimizer, _mse)
    x_np, y_np = _random_batch(case, batch)
    x, y = mx.array(x_np), mx.array(y_np)

    def run() -> float:
        return step(x, y).item()

    def forward() -> None:
        readout, state = model(x)
        mx.eval(readout, state)

    info = {
        "batch": batch,
        "kernel": _kernel_name(model),
        "synapses": model.synapse_count,
        "sensory_synapses": model.sensory_synapse_count,
        "units": model.state_size,
    }
    if case.cell == "ltc":
        info["ode_unfolds"] = model.rnn_cell.ode_unfolds
    return Runner(run, info, forward if case.cell == "ltc" else None)


def reference_train_runner(case: Case, batch: int | None = None) -> Runner:
    """The reference's training step for ``case`` (same synapses as ours)."""
    import ncps.torch
    import torch

    batch = case.batch if batch is None else batch
    torch.manual_seed(0)
    wiring = reference_wiring(build_wiring(case))
    cls = ncps.torch.LTC if case.cell == "ltc" else ncps.torch.CfC
    model = cls(case.inputs, wiring)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_np, y_np = _random_batch(case, batch)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def run() -> float:
        optimizer.zero_grad()
        readout, _ = model(x)
        loss = torch.mean((readout - y) ** 2)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return Runner(run, {"batch": batch, "threads": torch.get_num_threads()})


def ncp_step_runner(case: Case, variant: str = "no_grad") -> Runner:
    """One step of our cell on a batch-1 input, no gradient needed.

    ``variant``: ``"no_grad"`` (eager under :func:`ncp_core.no_grad`, as the
    reference runs under ``torch.no_grad``), ``"graph"`` (eager, recording
    the graph a gradient would need) or ``"compiled"`` (the step in
    ``mx.compile``, which runs the MLX kernels).
    """
    wiring = build_wiring(case)
    mx.random.seed(0)
    if case.cell == "ltc":
        cell: nn.Module = LTCCell(wiring)
    else:
        cell = WiredCfCCell(None, wiring)
    x_np, _ = _random_batch(case, case.batch)
    x = mx.array(x_np[:, 0])
    h = mx.zeros((case.batch, wiring.units))
    mx.eval(h)

    def call(x: mx.array, h: mx.array) -> tuple[mx.array, mx.array]:
        return cell(x, h)

    step = mx.compile(call, inputs=cell.state) if variant == "compiled" else call

    def run() -> float:
        y, state = step(x, h)
        mx.eval(y, state)
        return 0.0

    def run_no_grad() -> float:
        with native.no_grad():
            return run()

    kernel = "mlx (compiled)" if variant == "compiled" else _kernel_name(cell)
    info = {"kernel": kernel, "variant": variant, "compiled": variant == "compiled"}
    return Runner(run_no_grad if variant == "no_grad" else run, info)


def reference_step_runner(case: Case) -> Runner:
    """One step of the reference cell on a batch-1 input under ``no_grad``."""
    import ncps.torch
    import torch

    torch.manual_seed(0)
    wiring = reference_wiring(build_wiring(case))
    if case.cell == "ltc":
        cell = ncps.torch.LTCCell(wiring, case.inputs)
    else:
        cell = ncps.torch.WiredCfCCell(case.inputs, wiring)
    x_np, _ = _random_batch(case, case.batch)
    x = torch.from_numpy(x_np[:, 0].copy())
    h = torch.zeros(case.batch, wiring.units)

    def run() -> float:
        with torch.no_grad():
            cell(x, h, 1.0)
        return 0.0

    return Runner(run, {"threads": torch.get_num_threads()})


def make_runner(case: Case, library: str) -> Runner:
    """The runner of ``library``: ``"ncp"``, ``"reference"`` or ``"dense"``
    (ours on the dense kernel at ``case.dense_batch``)."""
    if case.kind == "inference":
        if library == "reference":
            return reference_step_runner(case)
        variants = {"ncp": "no_grad", "ncp_graph": "graph", "ncp_compiled": "compiled"}
        return ncp_step_runner(case, variants[library])
    if library == "ncp":
        return ncp_train_runner(case)
    if library == "reference":
        return reference_train_runner(case)
    if library == "dense":
        return ncp_train_runner(case, "dense", min(case.batch, case.dense_batch))
    raise ValueError(f"unknown library {library!r}")


# -- timing --------------------------------------------------------------------


def alternate(
    runners: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, list[float]]:
    """Seconds per call of each runner; after ``warmup`` untimed rounds, every
    repeat calls each runner once, in turn.

    Also returns, under ``<name>_cpu``, the process CPU seconds of each call:
    for a single-threaded library that is its time without the waits for a
    core that other processes cause.
    """
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for name in runners:
        times[f"{name}_cpu"] = []
    for _ in range(repeats):
        for name, run in runners.items():
            cpu = time.process_time()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            times[f"{name}_cpu"].append(time.process_time() - cpu)
    return times


def alternate_calls(
    runners: dict[str, Callable[[], Any]], warmup: int, repeats: int, calls: int
) -> dict[str, list[float]]:
    """As :func:`alternate` for steps of microseconds: each turn is ``calls``
    calls in a row, each timed, so one scheduler hiccup spoils few samples."""
    for _ in range(warmup):
        for run in runners.values():
            for _ in range(calls):
                run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            for _ in range(calls):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


# -- the floor -------------------------------------------------------------------


FLOOR_SIZES = (1 << 18, 1 << 20, 1 << 22)


def measure_floor(sizes: tuple[int, ...] = FLOOR_SIZES, repeats: int = 7) -> dict:
    """Nanoseconds per synapse evaluation ``w · σ(s (v − μ))``.

    With the native kernel: its C loop (``ncp_ltc_floor`` in ``ltc.c``) over
    contiguous batch rows at batch 16, 64 and 256, the floor the fastest.
    Always also MLX's compiled form, laid out as the sparse MLX kernel does
    (``v`` is ``(E, 64)``, the synapse parameters ``(E, 1)``, a few sizes
    ``E · 64``, MLX's sigmoid and :func:`ncp_core.cells.synapses.sigmoid`);
    the floor when the native kernel is unavailable. Each figure is the
    fastest of ``repeats`` calls.
    """
    rows = 64
    sigmoids = {"mx.sigmoid": mx.sigmoid, "ncp sigmoid": syn.sigmoid}
    compiled = {}
    for name, sigmoid in sigmoids.items():

        def activation(w, s, v, m, sigmoid=sigmoid):
            return w * sigmoid(s * (v - m))

        compiled[name] = mx.compile(activation)
    table: dict[str, dict[str, float]] = {name: {} for name in sigmoids}
    for size in sizes:
        keys = mx.random.split(mx.random.key(size), 4)
        synapses = size // rows
        v = mx.random.normal((synapses, rows), key=keys[0])
        w = mx.random.uniform(0.1, 1.0, (synapses, 1), key=keys[1])
        s = mx.random.uniform(3.0, 8.0, (synapses, 1), key=keys[2])
        m = mx.random.uniform(0.3, 0.8, (synapses, 1), key=keys[3])
        mx.eval(v, w, s, m)
        for name, fused in compiled.items():
            mx.eval(fused(w, s, v, m))
            best = math.inf
            for _ in range(repeats):
                start = time.perf_counter()
                mx.eval(fused(w, s, v, m))
                best = min(best, time.perf_counter() - start)
            table[name][str(size)] = best / v.size * 1e9
        del v, w, s, m
    mlx_floor = min(min(by_size.values()) for by_size in table.values())
    report: dict[str, Any] = {
        "ns_per_element": mlx_floor,
        "source": "mlx",
        "mlx": {
            "ns_per_element": mlx_floor,
            "ns_per_element_by_sigmoid_and_size": table,
            "expression": "w * sigmoid(s * (v - m)), v (E, 64), w s m (E, 1), compiled",
            "statistic": f"fastest of {repeats} per size; the fastest of all",
        },
    }
    library = native.load("ltc")
    if library is not None:
        library.ncp_ltc_floor.restype = ctypes.c_double
        library.ncp_ltc_floor.argtypes = [ctypes.c_int] * 5
        threads = native.num_threads()
        # about max(sizes) evaluations per pass, so thread start-up is noise,
        # over 2^16 potentials (256 KiB) visited again and again, so they
        # stay in cache as a step's potentials do in the kernel
        evaluations, resident = max(sizes), 1 << 16
        by_batch = {}
        for batch in (16, 64, 256):
            synapses = max(1, resident // batch)
            rounds = max(1, evaluations // (synapses * batch))
            seconds = library.ncp_ltc_floor(synapses, batch, repeats, threads, rounds)
            by_batch[str(batch)] = seconds * 1e9
        report["native"] = {
            "ns_per_element_by_batch": by_batch,
            "threads": threads,
            "evaluations_per_pass": evaluations,
            "resident_potentials": resident,
            "expression": "a = w * sigmoid(s * (v - m)); num += a * E; den += a "
            "(C, vectorised over the batch, batch split across threads)",
            "statistic": f"fastest of {repeats} per batch; the fastest of all",
        }
        report["ns_per_element"] = min(by_batch.values())
        report["source"] = "native"
    return report


def synapse_evaluations(case: Case, info: dict[str, Any]) -> int:
    """Sigmoids an LTC forward pass evaluates: every synapse at every unfold
    of every step, every sensory synapse once per step (the input is held
    over the unfolds), for every sample."""
    per_step = info["synapses"] * info["ode_unfolds"] + info["sensory_synapses"]
    return case.batch * case.length * per_step


# -- memory ------------------------------------------------------------------------


def worker_command(case: Case, library: str, smoke: bool, **options: Any) -> list:
    command = [sys.executable, str(WORKER), "--case", case.name, "--lib", library]
    if smoke:
        command.append("--smoke")
    for key, value in options.items():
        if value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def run_worker(command: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run a worker and return its JSON report (or the reason it gave none)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent), str(HERE), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"worker exited {done.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


# -- one case ----------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run_train_case(case: Case, args: argparse.Namespace, floor_ns: float) -> dict:
    ours = make_runner(case, "ncp")
    runners: dict[str, Callable[[], Any]] = {"ncp": ours.run}
    row: dict[str, Any] = {"ncp": dict(ours.info)}
    other: Runner | None = None
    if case.comparator == "reference":
        if case.reference == "oom" and not args.reference_oom:
            row["reference"] = {"status": NOT_RUN_OOM}
        elif not args.reference_available:
            row["reference"] = {"status": "not run: torch/ncps not installed"}
        elif case.reference == "oom":
            row["reference"] = _reference_in_limited_worker(case, args)
        else:
            other = make_runner(case, "reference")
    elif case.comparator == "dense":
        other = make_runner(case, "dense")
    if other is not None:
        runners[case.comparator] = other.run
        row[case.comparator] = dict(other.info)
    if ours.forward is not None:
        runners["ncp_forward"] = ours.forward

    losses = [ours.run()]
    times = alternate(runners, args.warmup, args.repeats)
    losses.append(ours.run())
    row["ncp"].update(_timing(times["ncp"], times["ncp_cpu"]))
    row["ncp"]["loss"] = losses[-1]
    row["ncp"]["loss_finite"] = all(math.isfinite(v) for v in losses)
    if "ncp_forward" in times:
        row["ncp"]["forward_median_s"] = _median(times["ncp_forward"])
        row["ncp"]["forward_times_s"] = times["ncp_forward"]
    if other is not None:
        row[case.comparator].update(
            _timing(times[case.comparator], times[f"{case.comparator}_cpu"])
        )
    if case.comparator == "dense":
        # the dense kernel runs a smaller batch to fit in memory; its cost is
        # at least linear in the batch, so scaling it up gives a lower bound
        scale = case.batch / row["dense"]["batch"]
        row["dense"]["scaled_to_batch"] = case.batch
        row["dense"]["scale"] = scale
        for key in ("median_s", "min_s", "cpu_median_s"):
            row["dense"][key] *= scale
    if "median_s" in row.get(case.comparator or "", {}):
        row.update(_ratios(row[case.comparator], row["ncp"]))

    if case.cell == "ltc" and ours.info.get("kernel") in ("sparse", "native"):
        evaluations = synapse_evaluations(case, ours.info)
        floor_s = evaluations * floor_ns * 1e-9
        row["synapse_evaluations"] = evaluations
        row["floor_s"] = floor_s
        row["floor_multiple"] = row["ncp"]["median_s"] / floor_s
        row["forward_floor_multiple"] = row["ncp"]["forward_median_s"] / floor_s
        row["forward_floor_multiple_fastest"] = min(times["ncp_forward"]) / floor_s
    del ours, other, runners
    _release()
    return row


def run_inference_case(case: Case, args: argparse.Namespace) -> dict:
    ours = make_runner(case, "ncp")
    graph = make_runner(case, "ncp_graph")
    compiled = make_runner(case, "ncp_compiled")
    runners: dict[str, Callable[[], Any]] = {
        "ncp": ours.run,
        "ncp_graph": graph.run,
        "ncp_compiled": compiled.run,
    }
    row: dict[str, Any] = {
        "ncp": dict(ours.info),
        "ncp_graph": dict(graph.info),
        "ncp_compiled": dict(compiled.info),
    }
    if args.reference_available:
        reference = make_runner(case, "reference")
        runners["reference"] = reference.run
        row["reference"] = dict(reference.info)
    else:
        row["reference"] = {"status": "not run: torch/ncps not installed"}
    times = alternate_calls(runners, 1, args.repeats, args.calls)
    for name in runners:
        row[name].update(_timing(times[name], keep=False))
    if "median_s" in row["reference"]:
        row.update(_ratios(row["reference"], row["ncp"]))
        for variant in ("graph", "compiled"):
            ratios = _ratios(row["reference"], row[f"ncp_{variant}"])
            row.update({f"{k}_{variant}": v for k, v in ratios.items()})
    _release()
    return row


def _ratios(other: dict[str, Any], ours: dict[str, Any]) -> dict[str, float]:
    """How many times faster ours is: by medians, by fastest runs, and by the
    more conservative of the two.

    Under load the two disagree: a multi-threaded library loses far more to
    a busy machine than a single-threaded one, so the ratio of medians can
    flatter whichever has fewer threads. The fastest runs approximate each
    library on a quiet machine.
    """
    ratios = {
        "speedup": other["median_s"] / ours["median_s"],
        "speedup_fastest": other["min_s"] / ours["min_s"],
    }
    ratios["speedup_conservative"] = min(ratios.values())
    if other.get("cpu_median_s") and ours.get("cpu_median_s"):
        # process CPU time: robust to load, but counts every torch thread
        ratios["speedup_cpu"] = other["cpu_median_s"] / ours["cpu_median_s"]
    return ratios


def _timing(
    values: list[float], cpu: list[float] | None = None, keep: bool = True
) -> dict[str, Any]:
    timing: dict[str, Any] = {
        "median_s": _median(values),
        "min_s": min(values),
        "calls": len(values),
    }
    if cpu:
        timing["cpu_median_s"] = _median(cpu)
    if keep:
        timing["times_s"] = values
    return timing


def _reference_in_limited_worker(case: Case, args: argparse.Namespace) -> dict:
    command = worker_command(
        case,
        "reference",
        args.smoke,
        steps=args.warmup + args.repeats,
        limit_gib=REFERENCE_LIMIT_GIB,
        threads=args.reference_threads,
    )
    report = run_worker(command)
    if "error" in report:
        return {"status": f"failed: {report['error']}"}
    times = report["times_s"][args.warmup :] or report["times_s"]
    result = _timing(times, report.get("cpu_s", [])[args.warmup :])
    result.update(
        peak_rss_mib=report["peak_rss_mib"],
        note=f"timed alone in a worker limited to {REFERENCE_LIMIT_GIB} GiB",
    )
    return result


def measure_memory(case: Case, row: dict, args: argparse.Namespace) -> None:
    """Peak memory of each library that ran, each in its own worker."""
    steps = 2 if args.smoke else 3
    libraries = ["ncp"]
    if "median_s" in row.get("reference", {}) and "peak_rss_mib" not in row.get(
        "reference", {}
    ):
        libraries.append("reference")
    if case.comparator == "dense" and "dense" in row:
        libraries.append("dense")
    for library in libraries:
        report = run_worker(
            worker_command(
                case, library, args.smoke, steps=steps, threads=args.reference_threads
            )
        )
        target = row[library]
        if "error" in report:
            target["memory_error"] = report["error"]
            continue
        target["peak_rss_mib"] = report["peak_rss_mib"]
        if report.get("mlx_peak_mib") is not None:
            target["mlx_peak_mib"] = report["mlx_peak_mib"]


def _release() -> None:
    gc.collect()
    mx.clear_cache()


# -- wiring build times --------------------------------------------------------------


def wiring_build_times(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The cases of ``bench_wiring_build.py``, timed with its own functions."""
    sys.path.insert(0, str(HERE))
    import bench_wiring_build as wb

    cases = wb.CASES
    if args.smoke:
        cases = [
            ("auto_ncp(64, 8)", lambda lib: lib.AutoNCP(64, 8)),
            ("fully_connected(64)", lambda lib: lib.FullyConnected(64)),
        ]
    reference = wb._reference() if args.reference_available else None
    rows = []
    for label, make in cases:
        wb._time_build(make, wb._Ours)
        ours, theirs = [], []
        for _ in range(args.build_repeats):
            ours.append(wb._time_build(make, wb._Ours))
            if reference is not None:
                theirs.append(wb._time_build(make, reference))
        row: dict[str, Any] = {"case": label, "ncp_median_s": _median(ours)}
        if theirs:
            row["reference_median_s"] = _median(theirs)
            row["speedup"] = row["reference_median_s"] / row["ncp_median_s"]
        rows.append(row)
    return rows


# -- targets -------------------------------------------------------------------------


def evaluate_targets(rows: dict[str, dict]) -> list[dict[str, Any]]:
    """Each target of the issue, with the measured value and met / not met
    (``None`` when the case did not run). Speed ratios are judged by the
    more conservative of the ratio of medians and of fastest runs."""
    targets = []

    def add(text: str, case: str, value: float | None, met: bool | None) -> None:
        busy = bool(rows.get(case, {}).get("busy"))
        targets.append(
            {"target": text, "case": case, "value": value, "met": met, "busy": busy}
        )

    def ratio(case: str, minimum: float, what: str) -> None:
        value = rows.get(case, {}).get("speedup_conservative")
        met = None if value is None else value >= minimum
        add(f"{what} >= {minimum:g}x faster", case, value, met)

    ratio("ltc_autoncp64", 4, "LTC AutoNCP(64, 8) training vs reference")
    ratio("ltc_autoncp256", 8, "LTC AutoNCP(256, 8) training vs reference")
    big = rows.get("ltc_autoncp1024", {}).get("ncp", {})
    peak = big.get("peak_rss_mib")
    add(
        "LTC AutoNCP(1024, 8) trains with peak < 8 GiB",
        "ltc_autoncp1024",
        None if peak is None else peak / 1024,
        None if peak is None else bool(big.get("loss_finite")) and peak < 8 * 1024,
    )
    ratio("cfc_autoncp64", 2, "CfC AutoNCP(64, 8) training vs reference")
    vision = rows.get("ltc_vision", {})
    speed = vision.get("speedup_conservative")
    add(
        "LTC vision trains and >= 20x faster than our dense kernel",
        "ltc_vision",
        speed,
        None
        if speed is None
        else bool(vision["ncp"].get("loss_finite")) and speed >= 20,
    )
    cfc_vision = rows.get("cfc_vision", {}).get("ncp", {})
    add(
        "CfC vision trains (finite loss)",
        "cfc_vision",
        cfc_vision.get("loss"),
        None if not cfc_vision else bool(cfc_vision.get("loss_finite")),
    )
    for name, row in rows.items():
        multiple = row.get("forward_floor_multiple")
        if multiple is not None:
            add(
                "LTC forward within 3x of the floor",
                name,
                multiple,
                multiple <= 3,
            )
    ratio("ltc_step19", 1, "LTC AutoNCP(19, 4) inference step vs reference")
    ratio("cfc_step19", 1, "CfC AutoNCP(19, 4) inference step vs reference")
    return targets


# -- machine -------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    memory_gib = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [
            ln.split(":", 1)[1].strip()
            for ln in text.splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "mlx": _version("mlx"),
        "mlx_device": str(mx.default_device()),
        "torch": _version("torch"),
        "ncps": _version("ncps"),
        "blas_libraries": loaded_blas(),
        "native_kernels": native.status(),
        "code": code_identity(),
        "load_average_start": os.getloadavg(),
    }
    if args.reference_available:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_threads_set"] = args.reference_threads is not None
    return info


def loaded_blas() -> list[str]:
    """File names of the BLAS/LAPACK libraries this process has mapped (MLX's
    matrix products run on whichever it was linked with)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    names = {
        Path(line.split()[-1]).name
        for line in maps.splitlines()
        if "/" in line and any(k in line.lower() for k in ("blas", "lapack", "mkl"))
    }
    return sorted(names)


def code_identity() -> dict[str, Any]:
    """The commit benchmarked and a digest of the cell runtime's files, so a
    result can be traced to the code that produced it even when that code had
    uncommitted changes."""
    root = HERE.parent
    files = sorted((root / "ncp_core").rglob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())

    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *command], cwd=root, capture_output=True, text=True
            )
        except OSError:
            return None
        return done.stdout if done.returncode == 0 else None

    changed = git("status", "--porcelain", "--", "ncp_core")
    return {
        "git_commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "uncommitted_ncp_core_files": sorted(
            line[3:] for line in (changed or "").splitlines()
        ),
        "ncp_core_sha256": digest.hexdigest(),
    }


def reference_available() -> bool:
    try:
        import ncps.torch  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- output ----------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _seconds(part: dict[str, Any]) -> str:
    if "median_s" in part:
        value = part["median_s"]
        return f"{value * 1e6:.0f} us" if value < 0.01 else f"{value:.3f}"
    return "n/r" if part else "-"


def print_table(report: dict[str, Any]) -> None:
    machine = report["machine"]
    print(
        f"{machine['cpu']}, {machine['cores']} cores; mlx {machine['mlx']}, "
        f"torch {machine['torch']} ({machine.get('torch_threads')} threads), "
        f"ncps {machine['ncps']}; floor {report['floor']['ns_per_element']:.2f} "
        "ns per synapse evaluation"
    )
    header = (
        f"{'case':<30}{'sizes':<15}{'kernel':<8}{'ncp s':>9}{'other':>11}"
        f"{'vs':>11}{'ratio':>7}{'fastest':>8}{'floor x':>8}{'fwd x':>6}"
        f"{'ncp MiB':>9}{'other MiB':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in report["cases"]:
        if "skipped" in row:
            print(f"{row['label']:<30}skipped: {row['skipped']}")
            continue
        other_name = row.get("comparator") or "-"
        other = row.get(other_name, {}) if row.get("comparator") else {}
        print(
            f"{row['label']:<30}{row['sizes']:<15}{row['ncp'].get('kernel')!s:<8}"
            f"{_seconds(row['ncp']):>9}{_seconds(other):>11}{other_name:>11}"
            f"{_fmt(row.get('speedup'), '.2f'):>7}"
            f"{_fmt(row.get('speedup_fastest'), '.2f'):>8}"
            f"{_fmt(row.get('floor_multiple'), '.1f'):>8}"
            f"{_fmt(row.get('forward_floor_multiple'), '.1f'):>6}"
            f"{_fmt(row['ncp'].get('peak_rss_mib'), '.0f'):>9}"
            f"{_fmt(other.get('peak_rss_mib'), '.0f'):>10}"
        )
        status = other.get("status")
        if status:
            print(f"{'':<30}{other_name}: {status}")
    print()
    for row in report["wiring_build"]:
        print(
            f"build {row['case']:<24}{row['ncp_median_s']:>9.4f} s, reference "
            f"{_fmt(row.get('reference_median_s'), '.3f')} s, "
            f"ratio {_fmt(row.get('speedup'), '.0f')}"
        )
    print()
    for target in report["targets"]:
        met = {True: "met", False: "NOT MET", None: "not run"}[target["met"]]
        busy = " (machine busy: rerun when quiet)" if target.get("busy") else ""
        print(
            f"[{met:>7}] {target['target']} ({target['case']}): "
            f"{_fmt(target['value'], '.2f')}{busy}"
        )


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write JSON here")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every case at batch 2, length 3: checks the harness, not speed",
    )
    parser.add_argument(
        "--cases", nargs="*", default=None, help="run only these case names"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the ncps reference"
    )
    parser.add_argument(
        "--reference-oom",
        action="store_true",
        help=f"run the reference on cases that exhaust memory, in a worker "
        f"limited to {REFERENCE_LIMIT_GIB} GiB of address space",
    )
    parser.add_argument(
        "--reference-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the reference (default: torch's own)",
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the memory workers"
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="print the table and targets of a saved JSON report; run nothing",
    )
    args = parser.parse_args(argv)
    args.calls = 200
    args.build_repeats = 5
    if args.quick:
        args.repeats, args.warmup, args.calls, args.build_repeats = 3, 1, 100, 2
    if args.smoke:
        args.repeats, args.warmup, args.calls, args.build_repeats = 1, 1, 5, 1
    args.reference_available = not args.no_reference and reference_available()
    if args.reference_available and args.reference_threads is not None:
        import torch

        torch.set_num_threads(args.reference_threads)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected case, the floor, the build times and the targets."""
    machine = machine_info(args)
    mx.random.seed(0)
    floor = measure_floor((1 << 16,) if args.smoke else FLOOR_SIZES)
    cases = [smoke_case(c) if args.smoke else c for c in CASES]
    if args.cases:
        cases = [c for c in cases if c.name in args.cases]
    rows: dict[str, dict[str, Any]] = {}
    skipped: list[Case] = []

    def attempt(case: Case) -> None:
        head = {
            "name": case.name,
            "label": case.label,
            "sizes": case.sizes,
            "cell": case.cell,
            "kind": case.kind,
            "comparator": case.comparator,
        }
        load_start = os.getloadavg()[0]
        try:
            if case.kind == "inference":
                row = run_inference_case(case, args)
            else:
                row = run_train_case(case, args, floor["ns_per_element"])
        except WiringUnavailable as error:
            rows[case.name] = {**head, "skipped": str(error)}
            skipped.append(case)
            print(f"{case.name}: skipped, {error}; retrying at the end", flush=True)
            return
        load = max(load_start, os.getloadavg()[0])
        row["load_average"] = load
        # the benchmark itself keeps up to all cores busy (torch's threads);
        # anything beyond one more runnable process comes from elsewhere
        row["busy"] = load > (os.cpu_count() or 1) + 1
        if not args.no_memory:
            measure_memory(case, row, args)
        rows[case.name] = {**head, **row}
        print(f"{case.name}: done", flush=True)

    for case in cases:
        attempt(case)
    if skipped:
        from ncp_core import plugins

        plugins.reset()
        for case in list(skipped):
            attempt(case)

    report = {
        "benchmark": "cells",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "command": " ".join(["python", "benchmarks/bench_cells.py", *sys.argv[1:]]),
        "settings": {
            "warmup": args.warmup,
            "repeats": args.repeats,
            "inference_calls_per_repeat": args.calls,
            "smoke": args.smoke,
            "quick": args.quick,
            "reference": args.reference_available,
            "reference_oom": args.reference_oom,
            "loss": "mean squared error of every readout step against random targets",
            "optimizer": "Adam, learning rate 1e-3, both libraries",
        },
        "machine": machine,
        "floor": floor,
        "cases": [rows[c.name] for c in cases],
        "wiring_build": wiring_build_times(args),
    }
    report["targets"] = evaluate_targets(rows)
    machine["load_average_end"] = os.getloadavg()
    code_end = code_identity()
    if code_end != machine["code"]:
        # the worker processes import the code anew: their numbers may come
        # from the newer version
        machine["code_at_end"] = code_end
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.render:
        print_table(json.loads(args.render.read_text()))
        return
    report = run(args)
    print_table(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
