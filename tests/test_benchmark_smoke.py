"""The cell benchmark runs end to end at tiny sizes and reports sound numbers.

Correctness of the harness only, never speed: ``bench_cells.py --smoke`` runs
every case at batch 2, length 3 for our library (the reference is optional
and left out here so the test behaves the same with or without torch).
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_cells.py"


def _load_bench():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_cells", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cells"] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "cells.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--no-reference", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_smoke_report_has_every_case_with_finite_times_and_memory(smoke_report):
    names = [row["name"] for row in smoke_report["cases"]]
    assert names == [case.name for case in bench.CASES]
    for row in smoke_report["cases"]:
        ours = row["ncp"]
        assert _finite_positive(ours["median_s"]), row["name"]
        assert _finite_positive(ours["peak_rss_mib"]), row["name"]
        assert math.isfinite(ours["mlx_peak_mib"]), row["name"]
        if row["kind"] == "train":
            assert ours["loss_finite"] is True
            assert 0 < ours["loss"] < 10  # MSE of unit-variance random targets


def test_smoke_report_times_the_dense_kernel_as_the_vision_comparator(smoke_report):
    vision = next(r for r in smoke_report["cases"] if r["name"] == "ltc_vision")
    # ours runs on the native kernel where it builds, else on the sparse one
    expected = "native" if smoke_report["floor"]["source"] == "native" else "sparse"
    assert vision["ncp"]["kernel"] == expected
    assert vision["dense"]["kernel"] == "dense"
    # the dense kernel ran at batch 1 and was scaled to the case's batch 2
    assert vision["dense"]["batch"] == 1
    assert vision["dense"]["scale"] == 2
    assert vision["speedup"] == pytest.approx(
        vision["dense"]["median_s"] / vision["ncp"]["median_s"]
    )
    assert vision["speedup_conservative"] == min(
        vision["speedup"], vision["speedup_fastest"]
    )
    assert _finite_positive(vision["dense"]["peak_rss_mib"])


def test_floor_multiple_counts_every_synapse_evaluation(smoke_report):
    vision = next(r for r in smoke_report["cases"] if r["name"] == "ltc_vision")
    wiring = bench.build_wiring(bench.smoke_case(bench.case_by_name("ltc_vision")))
    synapses = int(np.count_nonzero(wiring.adjacency))
    sensory = int(np.count_nonzero(wiring.sensory_adjacency))
    # batch 2, length 3, 6 unfolds over the synapses, sensory once per step
    assert vision["synapse_evaluations"] == 2 * 3 * (6 * synapses + sensory)
    floor = smoke_report["floor"]
    ns = floor["ns_per_element"]
    assert _finite_positive(ns)
    assert _finite_positive(floor["mlx"]["ns_per_element"])
    if floor["source"] == "native":
        assert ns == min(floor["native"]["ns_per_element_by_batch"].values())
    assert vision["floor_s"] == pytest.approx(vision["synapse_evaluations"] * ns * 1e-9)
    assert vision["forward_floor_multiple"] == pytest.approx(
        vision["ncp"]["forward_median_s"] / vision["floor_s"]
    )


def test_smoke_report_lists_every_target_and_the_machine(smoke_report):
    targets = {(t["target"], t["case"]) for t in smoke_report["targets"]}
    cases = {case for _, case in targets}
    assert {"ltc_autoncp64", "ltc_autoncp256", "ltc_autoncp1024"} <= cases
    assert {"cfc_autoncp64", "ltc_vision", "cfc_vision", "ltc_step19"} <= cases
    # without the reference a ratio target is "not run", never met or failed
    ratio = next(t for t in smoke_report["targets"] if t["case"] == "ltc_autoncp64")
    assert ratio["met"] is None
    machine = smoke_report["machine"]
    assert machine["cores"] >= 1 and machine["mlx"]
    for row in smoke_report["wiring_build"]:
        assert _finite_positive(row["ncp_median_s"])


def test_alternate_calls_each_runner_once_per_repeat_after_warmup():
    calls: list[str] = []
    runners = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    times = bench.alternate(runners, warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    lengths = {name: len(values) for name, values in times.items()}
    assert lengths == {"a": 3, "b": 3, "a_cpu": 3, "b_cpu": 3}
    assert all(t >= 0 for values in times.values() for t in values)


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is read from /proc")
def test_worker_peak_is_its_own_not_the_parents():
    # the parent holds 300 MiB; ru_maxrss would hand that peak to the worker
    ballast = np.ones(300 << 17)
    command = bench.worker_command(
        bench.case_by_name("ltc_step19"), "ncp", True, steps=1
    )
    report = bench.run_worker(command, timeout=120)
    assert "error" not in report, report
    assert ballast.sum() == 300 << 17
    assert 0 < report["peak_rss_mib"] < 150
    assert report["baseline_rss_mib"] < 250


def test_reference_wiring_has_our_synapses_and_layers():
    ncps_torch = pytest.importorskip("ncps.torch")
    case = bench.smoke_case(bench.case_by_name("ltc_autoncp64"))
    ours = bench.build_wiring(case)
    theirs = bench.reference_wiring(ours)
    model = ncps_torch.LTC(case.inputs, theirs)  # builds the wiring once more
    np.testing.assert_array_equal(theirs.adjacency_matrix, ours.adjacency)
    np.testing.assert_array_equal(
        theirs.sensory_adjacency_matrix, ours.sensory_adjacency
    )
    assert model.synapse_count == np.count_nonzero(ours.adjacency)
    assert [theirs.get_neurons_of_layer(i) for i in range(theirs.num_layers)] == [
        list(map(int, ids)) for ids in ours.layers
    ]
