"""Benchmark: a replay beside the live run it replays, per runbook, in the same minute.

    .venv/bin/python benchmarks/replay.py [--runs 5]

Starts its own lab in a temporary state dir, puts it under each runbook's fault from the fault
drill (bad-deploy, broker-rejects, slow-query, stale-calibration), runs `irlib run` RUNS times,
clears the fault and replays each of those runs (`irlib replay`, no connection). Prints the
medians, their ratio, and the floor of any run: papermill on an empty notebook.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_and_run import IRLIB, exports, timed

CASES = {
    "p1_system_unavailable": "bad-deploy",
    "p1_execution_failures": "broker-rejects",
    "p2_high_latency": "slow-query",
    "p2_calibration_failures": "stale-calibration",
}


def floor_s(runs: int) -> float:
    """papermill running an empty ten-cell notebook: the kernel's start and nothing else."""
    with tempfile.TemporaryDirectory() as d:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1") for _ in range(10)])
        path = Path(d) / "empty.ipynb"
        nbformat.write(nb, path)
        cmd = [sys.executable, "-m", "papermill", "-k", "python3", str(path), str(path) + ".out"]
        return statistics.median(timed(cmd)[0] for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="irlib-bench-"))
    outputs = Path(tempfile.mkdtemp(prefix="irlib-bench-out-"))
    _, out = timed([*IRLIB, "lab", "up", "--state-dir", str(state)])
    env = exports(out)
    lab = ["--state-dir", str(state)]
    head = f"{'runbook':26} {'fault':18} {'live s':>7} {'replay s':>9} {'ratio':>6}"
    print(f"{head} {'captures':>12}")
    try:
        for runbook, fault in CASES.items():
            timed([*IRLIB, "lab", "inject", fault, *lab], env)
            live, run_dirs = [], []
            try:
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    _, printed = timed([*IRLIB, "run", runbook, "--outputs", str(outputs)], env)
                    live.append(time.perf_counter() - t0)
                    run_dirs.append(Path(printed.strip().splitlines()[-1]))
            finally:
                timed([*IRLIB, "lab", "clear", *lab], env)
            # replayed once the fault is cleared: a replay needs no lab, and the fault's own
            # load (slow-query's scans) would only slow the machine it runs on
            replayed = [timed([*IRLIB, "replay", str(d)], env)[0] for d in run_dirs]
            sizes = [(d / "captures.jsonl").stat().st_size for d in run_dirs]
            a, b = statistics.median(live), statistics.median(replayed)
            kb = statistics.median(sizes) / 1024
            print(f"{runbook:26} {fault:18} {a:7.2f} {b:9.2f} {a / b:5.1f}x {kb:9.0f} KB")
        print(f"papermill, empty notebook (the floor of any run): {floor_s(args.runs):.2f} s")
    finally:
        timed([*IRLIB, "lab", "down", "--purge", *lab], env)


if __name__ == "__main__":
    main()
