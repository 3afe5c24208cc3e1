"""Wiring construction time: ncp against the reference ``ncps`` 1.0.1.

Each case builds the same wiring (same sizes, input size 16) in both
libraries, alternating, and reports medians and the ratio. The reference is
optional: without ``ncps`` installed only our times are reported.

    python benchmarks/bench_wiring_build.py [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from ncp_core.classic import AutoNCP, FullyConnected

CASES = [
    ("auto_ncp(4096, 8)", lambda lib: lib.AutoNCP(4096, 8)),
    ("auto_ncp(1024, 8)", lambda lib: lib.AutoNCP(1024, 8)),
    ("fully_connected(1024)", lambda lib: lib.FullyConnected(1024)),
    ("fully_connected(256)", lambda lib: lib.FullyConnected(256)),
]
INPUT_DIM = 16


class _Ours:
    AutoNCP = AutoNCP
    FullyConnected = FullyConnected


def _time_build(make, lib) -> float:
    start = time.perf_counter()
    wiring = make(lib)
    wiring.build(INPUT_DIM)
    return time.perf_counter() - start


def _reference():
    try:
        import ncps.wirings as reference
    except ImportError:
        return None
    return reference


def run(repeats: int) -> dict:
    reference = _reference()
    results = []
    for label, make in CASES:
        ours, theirs = [], []
        _time_build(make, _Ours)
        for _ in range(repeats):
            ours.append(_time_build(make, _Ours))
            if reference is not None:
                theirs.append(_time_build(make, reference))
        row = {"case": label, "ncp_median_s": statistics.median(ours)}
        if theirs:
            row["reference_median_s"] = statistics.median(theirs)
            row["speedup"] = row["reference_median_s"] / row["ncp_median_s"]
        results.append(row)
    return {
        "benchmark": "wiring_build",
        "machine": f"{platform.machine()} {platform.processor()} "
        f"{platform.system()} python {platform.python_version()}",
        "repeats": repeats,
        "reference": None if reference is None else "ncps 1.0.1",
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = run(args.repeats)
    print(f"{'case':<24}{'ncp (s)':>10}{'ncps (s)':>10}{'ratio':>8}")
    for row in report["results"]:
        ref = row.get("reference_median_s")
        ratio = row.get("speedup")
        print(
            f"{row['case']:<24}{row['ncp_median_s']:>10.4f}"
            f"{'-' if ref is None else f'{ref:.3f}':>10}"
            f"{'-' if ratio is None else f'{ratio:.0f}x':>8}"
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
