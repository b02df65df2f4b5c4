"""Benchmark: each replay beside the live run it replays, per runbook, in the same minute.

    .venv/bin/python benchmarks/replay.py [--runs 5]

Starts its own lab in a temporary state dir, puts it under each runbook's fault from the fault
drill (bad-deploy, broker-rejects, slow-query, stale-calibration), runs `irlib run` RUNS times,
clears the fault and replays each of those runs (`irlib replay`, no connection), one command
each, then all of them in one `irlib replay` command. Prints, per runbook, the medians of: the
live run; a replay alone until the verdict is printed and until the evidence folder is
complete (the HTML is rendered after the verdict); a replay in one process with others (the
time from one replay's folder to the next's, as the post-mortem and the regression suite
replay); the ratios; and the CPU time of the live run and of a replay alone (user + system,
the kernel process included), which a busy machine disturbs less than the wall clock. Then
the floor of any run: papermill on an empty notebook.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floor import papermill_floor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_and_run import IRLIB, ROOT, exports, timed

CASES = {
    "p1_system_unavailable": "bad-deploy",
    "p1_execution_failures": "broker-rejects",
    "p2_high_latency": "slow-query",
    "p2_calibration_failures": "stale-calibration",
}
VERDICT = ("the same verdict", "what changed:", "the replay crashed")  # irlib.replay's lines


def children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, list[str]]:
    """Wall time to the verdict line (irlib replay's) and to the end, CPU time, stdout lines."""
    cpu, t0 = children_cpu_s(), time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    lines, verdict_at = [], None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if verdict_at is None and line.startswith(VERDICT):
            verdict_at = time.perf_counter() - t0
    proc.wait()
    end = time.perf_counter() - t0
    return verdict_at or end, end, children_cpu_s() - cpu, lines


def batch(folders: list[Path], env: dict[str, str]) -> list[float]:
    """`irlib replay` of all `folders` in one process: the seconds from each replay's folder
    printed to the next one's (what each replay after the first costs there)."""
    proc = subprocess.Popen(
        [*IRLIB, "replay", *map(str, folders)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    # a replay's new folder is printed after its verdicts: the one absolute path of its lines
    done_at = [time.perf_counter() for line in proc.stdout if line.startswith("/")]
    proc.wait()
    assert len(done_at) == len(folders), f"{len(done_at)} of {len(folders)} replays finished"
    return [b - a for a, b in itertools.pairwise(done_at)]


def floor_s(runs: int) -> float:
    """papermill running an empty ten-cell notebook: the kernel's start and nothing else."""
    with tempfile.TemporaryDirectory() as d:
        cmd = papermill_floor(Path(d))
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
    print(
        f"{'runbook':24} {'fault':17} {'live s':>7} {'alone s':>8} {'ratio':>6} "
        f"{'verdict s':>9} {'ratio':>6} {'batched s':>9} {'ratio':>6} "
        f"{'live cpu':>8} {'alone cpu':>9} {'captures':>9}"
    )
    try:
        for runbook, fault in CASES.items():
            timed([*IRLIB, "lab", "inject", fault, *lab], env)
            live, live_cpu, run_dirs = [], [], []
            try:
                for _ in range(args.runs):
                    _, wall, cpu, printed = run(
                        [*IRLIB, "run", runbook, "--outputs", str(outputs)], env
                    )
                    live.append(wall)
                    live_cpu.append(cpu)
                    run_dirs.append(Path(printed[-1].strip()))
            finally:
                timed([*IRLIB, "lab", "clear", *lab], env)
            # replayed once the fault is cleared: a replay needs no lab, and the fault's own
            # load (slow-query's scans) would only slow the machine it runs on
            replays = [run([*IRLIB, "replay", str(d)], env) for d in run_dirs]
            each = statistics.median(batch(run_dirs, env))
            alone_cpu = statistics.median(r[2] for r in replays)
            differ = sum(1 for r in replays if VERDICT[0] not in r[3])
            sizes = [(d / "captures.jsonl").stat().st_size for d in run_dirs]
            a = statistics.median(live)
            to_verdict = statistics.median(r[0] for r in replays)
            done = statistics.median(r[1] for r in replays)
            print(
                f"{runbook:24} {fault:17} {a:7.2f} {done:8.2f} {a / done:5.1f}x "
                f"{to_verdict:9.2f} {a / to_verdict:5.1f}x {each:9.2f} {a / each:5.1f}x "
                f"{statistics.median(live_cpu):8.2f} {alone_cpu:9.2f} "
                f"{statistics.median(sizes) / 1024:6.0f} KB"
                + (f"  ({differ} replay(s) with another verdict)" if differ else ""),
                flush=True,
            )
        print(f"papermill, empty notebook (the floor of any run): {floor_s(args.runs):.2f} s")
    finally:
        timed([*IRLIB, "lab", "down", "--purge", *lab], env)


if __name__ == "__main__":
    main()
