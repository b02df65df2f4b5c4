"""Benchmark: the P2 "High Latency" notebook's run time against the drill lab, and for each
latency fault the time from its injection until Prometheus shows it.

    .venv/bin/python benchmarks/p2_latency.py [--runs 3]

Starts and stops its own lab in a temporary state dir (and deletes its run folders); prints one
line per figure. "Shows it" is the API's p99 over a 10 s window passing 5 s (the seed's
symptom), or for slow-query the p99 of /v1/orders passing 25 ms (one seq scan of 200k rows does
not make 5 s); Redis memory and pod memory are not Prometheus series in the lab (INFO and the
metrics API show them), so for those the figure is the time until `irlib lab inject` saw them
where production would.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab_env import exports  # benchmarks/lab_env.py; a script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
IRLIB = [sys.executable, "-m", "irlib.cli"]

from irlib import prom  # noqa: E402
from irlib.lab.config import LabConfig  # noqa: E402
from irlib.prom.checks import quantile_query  # noqa: E402

THRESHOLD_S = 5.0


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        sys.exit(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return elapsed, out.stdout


def p99(url: str, route: str | None = None, window: str = "10s") -> float:
    rows = prom.query(
        url,
        quantile_query(
            "http_request_duration_seconds",
            0.99,
            window,
            "api-service",
            by="route" if route else "",
        ),
        timeout_s=5,
    )
    values = [v for labels, v in rows if route is None or labels.get("route") == route]
    return values[0] if values and values[0] is not None else 0.0


def wait(condition: Callable[[], bool], timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if condition():
            return time.perf_counter() - t0
        time.sleep(0.25)
    return float("nan")


SIGNALS: dict[str, Callable[[str], bool] | None] = {
    "slow-query": lambda url: p99(url, "/v1/orders") > 0.025,
    "lock-contention": lambda url: p99(url) > THRESHOLD_S,
    "connection-exhaustion": lambda url: p99(url) > THRESHOLD_S,
    "cpu-saturation": lambda url: p99(url) > THRESHOLD_S,
    "redis-memory-pressure": None,
    "memory-leak": None,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="irlib-bench-"))
    outputs = Path(tempfile.mkdtemp(prefix="irlib-bench-out-"))
    lab = [*IRLIB, "lab"]
    try:
        _, out = timed([*lab, "up", "--state-dir", str(state)])
        env = exports(out)
        url = LabConfig.load(state).url("prometheus")
        wait(lambda: p99(url, window="20s") > 0)  # Prometheus has its first answer
        run = [*IRLIB, "run", "p2_high_latency", "--outputs", str(outputs), "-p", "window", "1m"]
        healthy = [timed(run, env)[0] for _ in range(args.runs)]
        print(
            f"notebook run, healthy lab (n={args.runs}):   "
            f"median {statistics.median(healthy):5.1f} s"
            f"  (min {min(healthy):.1f}, max {max(healthy):.1f})"
        )
        for fault, signal in SIGNALS.items():
            wait(lambda: p99(url, window="20s") < 1.0)  # the previous fault has left the window
            t0 = time.perf_counter()
            timed([*lab, "inject", fault, "--state-dir", str(state)], env)
            injected = time.perf_counter() - t0
            if signal is None:
                print(f"{fault:<22} inject -> visible (INFO / metrics API): {injected:5.1f} s")
            else:
                shown = wait(lambda s=signal: s(url))
                print(
                    f"{fault:<22} inject -> Prometheus shows it:      "
                    f"{time.perf_counter() - t0 if shown == shown else float('nan'):5.1f} s"
                )
            if fault == "slow-query":
                elapsed, _ = timed(run, env)
                print(f"notebook run, under slow-query:         {elapsed:5.1f} s")
            timed([*lab, "clear", "--state-dir", str(state)], env)
    finally:
        timed([*lab, "down", "--purge", "--state-dir", str(state)])
        shutil.rmtree(outputs, ignore_errors=True)


if __name__ == "__main__":
    main()
