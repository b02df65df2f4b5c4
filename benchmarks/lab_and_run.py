"""Benchmark: drill lab start-up (cold and warm), its memory, and `irlib run` wall time
beside papermill on an empty notebook (the kernel's start is the floor), in the same minute.

    .venv/bin/python benchmarks/lab_and_run.py [--runs 3]

Starts and stops its own lab in a temporary state dir; prints one line per figure.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from floor import papermill_floor
from lab_env import exports  # benchmarks/lab_env.py; a script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
IRLIB = [sys.executable, "-m", "irlib.cli"]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        sys.exit(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return elapsed, out.stdout


def tree_rss_mib(pids: list[int]) -> float:
    """Resident memory of the lab's processes and all their descendants (PostgreSQL forks)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    total = 0
    for pid in seen:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="irlib-bench-"))
    outputs = Path(tempfile.mkdtemp(prefix="irlib-bench-out-"))
    try:
        cold, out = timed([*IRLIB, "lab", "up", "--state-dir", str(state)])
        print(f"lab up, cold (initdb + seed):        {cold:6.1f} s")
        timed([*IRLIB, "lab", "down", "--state-dir", str(state)])
        warm, out = timed([*IRLIB, "lab", "up", "--state-dir", str(state)])
        print(f"lab up, warm (data kept):            {warm:6.1f} s")
        pids = [int(p.read_text().split()[0]) for p in (state / "run").glob("*.pid")]
        print(f"lab memory (RSS, all processes):     {tree_rss_mib(pids):6.0f} MiB")
        env = exports(out)

        floor = [timed(papermill_floor(outputs, cells=1))[0] for _ in range(args.runs)]
        runs = [
            timed([*IRLIB, "run", "p1_system_unavailable", "--outputs", str(outputs)], env=env)[0]
            for _ in range(args.runs)
        ]
        print(
            f"papermill CLI, empty notebook:       {statistics.median(floor):6.1f} s "
            f"(median of {args.runs})"
        )
        print(
            f"irlib run p1_system_unavailable:     {statistics.median(runs):6.1f} s "
            f"(median of {args.runs}, healthy lab)"
        )
    finally:
        subprocess.run(
            [*IRLIB, "lab", "down", "--purge", "--state-dir", str(state)], capture_output=True
        )
        subprocess.run(["rm", "-rf", str(outputs)])


if __name__ == "__main__":
    main()
