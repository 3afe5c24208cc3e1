"""Worker of ``bench_cells.py``: a few steps of one case and one library, alone.

Run in a fresh process so that its peak memory is its own. Prints one JSON
line: the growth of the peak resident set size over the baseline taken after
the imports (MiB), MLX's own peak for our library, and the seconds of each
step.

The peak is ``VmHWM`` of ``/proc/self/status`` where there is one: on Linux
``ru_maxrss`` carries the *parent's* peak over ``fork`` and ``exec``, so a
worker started by a large benchmark process would see no growth at all.
``VmHWM`` is the same high-water mark for this process's own memory.
Elsewhere ``ru_maxrss`` is used.

    python benchmarks/_cells_worker.py --case ltc_autoncp64 --lib ncp --steps 3

``--limit-gib`` caps the address space (``RLIMIT_AS``) before anything is
imported, so a case that would exhaust the machine fails with an
out-of-memory error instead.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

STATUS = Path("/proc/self/status")


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1 << 20) if sys.platform == "darwin" else maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", required=True)
    parser.add_argument(
        "--lib", required=True, choices=["ncp", "ncp_compiled", "reference", "dense"]
    )
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--limit-gib", type=float, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    if args.limit_gib is not None:
        limit = int(args.limit_gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cells
    import mlx.core as mx

    if args.lib == "reference":
        import ncps.torch  # noqa: F401
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
    case = bench_cells.case_by_name(args.case, smoke=args.smoke)
    baseline = _peak_rss_mib()
    mx.reset_peak_memory()

    report: dict = {"case": case.name, "lib": args.lib, "baseline_rss_mib": baseline}
    times, cpu = [], []
    try:
        runner = bench_cells.make_runner(case, args.lib)
        for _ in range(args.steps):
            cpu_start = time.process_time()
            start = time.perf_counter()
            runner.run()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
    except (MemoryError, RuntimeError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        report["error"] = f"{type(error).__name__}: {text[:200]}"
        if args.limit_gib is not None:
            report["error"] += f" (under a {args.limit_gib:g} GiB limit)"
    report["times_s"] = times
    report["cpu_s"] = cpu
    report["peak_rss_mib"] = _peak_rss_mib() - baseline
    if args.lib != "reference":
        report["mlx_peak_mib"] = mx.get_peak_memory() / (1 << 20)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
