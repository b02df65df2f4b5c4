"""Benchmark: the runbooks at a real platform's size. For a small lab (20 api-service pods, 200
events) and a large one (2,000 pods on 40 nodes, 20,000 events): the wall time of `irlib run
p1_system_unavailable`, of the health drill, and of the seed's P1 commands as a plain shell
script; irlib's peak memory (the largest process of a run: the kernel); the large/small ratio.

    .venv/bin/python benchmarks/scale.py [--runs 3] [--seed-runs 1]

Starts and stops its own labs in temporary state dirs, one after the other; prints a table.
The seed's script is kubectl as a person types it: `kubectl logs -l` reads every pod's log
one after another, so at 2,000 pods it alone takes minutes (hence --seed-runs, default 1; 0
leaves it out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab_env import exports  # benchmarks/lab_env.py; a script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
IRLIB = [sys.executable, "-m", "irlib.cli"]
SIZES = {"small": (3, 20, 200), "large": (40, 2000, 20000)}  # nodes, api pods, events

# The seed's P1 "first five minutes", read-only, as a person would paste them.
SEED_SCRIPT = """
set -u
curl -s -o /dev/null -w '%{http_code}\\n' "$API_URL/health"
kubectl get pods -n trading
kubectl get ingress -n trading
kubectl get events -n trading --sort-by='.lastTimestamp' | tail -20
kubectl rollout history deployment/api-service -n trading
kubectl get nodes
kubectl top pods -n trading
kubectl top nodes
kubectl logs -l app=api-service -n trading --tail=100 --since=10m
pod=$(kubectl get pods -n trading -l app=api-service -o name | head -1)
kubectl describe -n trading "$pod"
"""


@dataclass
class Figures:
    run: list[float]
    run_peak_mib: list[float]
    drill: list[float]
    seed: list[float]
    up_s: float


def measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MiB of the process or any child it waited for, exit, stdout)."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return elapsed, usage.ru_maxrss / 1024, proc.returncode, out.read().decode()


def one_size(name: str, runs: int, seed_runs: int) -> Figures:
    nodes, pods, events = SIZES[name]
    state = Path(tempfile.mkdtemp(prefix=f"irlib-scale-{name}-"))
    outputs = Path(tempfile.mkdtemp(prefix="irlib-scale-out-"))
    size = ["--nodes", str(nodes), "--api-replicas", str(pods), "--events", str(events)]
    try:
        up_s, _, code, text = measured(
            [*IRLIB, "lab", "up", "--state-dir", str(state), *size], dict(os.environ)
        )
        if code != 0:
            sys.exit(f"irlib lab up ({name}) failed with {code}")
        env = exports(text)
        env["API_URL"] = next(
            line.split()[-1]
            for line in subprocess.run(
                [*IRLIB, "lab", "status", "--state-dir", str(state)],
                capture_output=True,
                text=True,
                env=env,
            ).stdout.splitlines()
            if line.startswith("api ")
        )
        figures = Figures([], [], [], [], up_s)
        for _ in range(runs):
            wall, peak, code, _ = measured(
                [*IRLIB, "run", "p1_system_unavailable", "--outputs", str(outputs)], env
            )
            figures.run.append(wall)
            figures.run_peak_mib.append(peak)
            print(f"  {name}: irlib run p1 {wall:.1f} s (exit {code}), peak {peak:.0f} MiB")
        for _ in range(runs):
            wall, _, code, _ = measured([*IRLIB, "drill", "health", "--outputs", str(outputs)], env)
            figures.drill.append(wall)
            print(f"  {name}: irlib drill health {wall:.1f} s (exit {code})")
        for _ in range(seed_runs):
            wall, _, code, _ = measured(["bash", "-c", SEED_SCRIPT], env)
            figures.seed.append(wall)
            print(f"  {name}: the seed's commands {wall:.1f} s (exit {code})")
        return figures
    finally:
        subprocess.run(
            [*IRLIB, "lab", "down", "--purge", "--state-dir", str(state)], capture_output=True
        )
        subprocess.run(["rm", "-rf", str(outputs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed-runs", type=int, default=1)
    args = parser.parse_args()
    done = {name: one_size(name, args.runs, args.seed_runs) for name in SIZES}
    small, large = done["small"], done["large"]
    med = statistics.median
    rows = [
        ("`irlib run p1_system_unavailable`", med(small.run), med(large.run), "s"),
        ("`irlib drill health`", med(small.drill), med(large.drill), "s"),
        *(
            [("the seed's commands as a plain script", med(small.seed), med(large.seed), "s")]
            if args.seed_runs  # 0: not run (at 2,000 pods it takes minutes)
            else []
        ),
        ("irlib's peak memory (a run's kernel)", max(small.run_peak_mib),
         max(large.run_peak_mib), "MiB"),
        ("`irlib lab up` (for the record)", small.up_s, large.up_s, "s"),
    ]  # fmt: skip
    print()
    print(f"| median of {args.runs} ({args.seed_runs} for the seed's script) | "
          "20 pods, 200 events | 2,000 pods, 20,000 events | large/small |")  # fmt: skip
    print("|---|---|---|---|")
    for label, a, b, unit in rows:
        print(f"| {label} | {a:.1f} {unit} | {b:.1f} {unit} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
