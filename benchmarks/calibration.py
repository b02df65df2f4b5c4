"""Benchmark: one Heston calibration in the lab, and the whole P2 "Calibration Failures"
notebook run.

    .venv/bin/python benchmarks/calibration.py [--runs 5] [--state-dir DIR]

Prints, one line per figure: a fit in process (numpy/scipy only, the lab's SPY surface), a
forced recalibration through the API (proxy, calibration-service, PostgreSQL, fit, store),
the manual test calibration through the API, and `irlib run p2_calibration_failures` on a
healthy lab. Starts and stops its own lab in a temporary state dir unless given one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from lab_env import exports  # benchmarks/lab_env.py; a script's folder is on sys.path

from irlib.lab import surfaces
from irlib.lab.heston import Surface, calibrate

ROOT = Path(__file__).resolve().parent.parent
IRLIB = [sys.executable, "-m", "irlib.cli"]


def figure(name: str, samples: list[float]) -> None:
    print(
        f"{name:<52} median {statistics.median(samples):7.3f} s   "
        f"min {min(samples):7.3f} s   max {max(samples):7.3f} s   (n={len(samples)})"
    )


def repeat(runs: int, call: Callable[[], object]) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


def in_process(runs: int) -> None:
    rng = np.random.default_rng(1)
    rows = surfaces.snapshot("SPY", 590.0, dt.datetime.now(dt.UTC), rng)
    surface = Surface(
        590.0,
        np.array([r["strike"] for r in rows]),
        np.array([(r["expiry"] - r["ts"].date()).days / 365.0 for r in rows]),
        np.array([r["option_type"] == "call" for r in rows]),
        surfaces.RATE,
    )
    vols = np.array([r["implied_vol"] for r in rows])
    figure(
        f"fit in process ({len(rows)} quotes, numpy/scipy)",
        repeat(runs, lambda: calibrate(vols, surface)),
    )


def in_lab(runs: int, state_dir: str, env: dict[str, str]) -> None:
    api = subprocess.run(
        [*IRLIB, "lab", "status", "--json", "--state-dir", state_dir],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    url = json.loads(api.stdout)["api"]["url"]
    token = {"Authorization": f"Bearer {env['IRLIB_ADMIN_TOKEN']}"}

    def recalibrate() -> None:
        resp = httpx.post(
            url + "/v1/calibration/heston",
            json={"symbol": "SPY", "force": True},
            headers=token,
            timeout=60,
        )
        if resp.status_code != 201:
            sys.exit(f"recalibration failed: {resp.text}")

    def test() -> None:
        resp = httpx.get(url + "/v1/calibration/test", params={"symbol": "SPY"}, timeout=60)
        if resp.status_code != 200:
            sys.exit(f"test calibration failed: {resp.text}")

    figure("forced recalibration of SPY through the API", repeat(runs, recalibrate))
    figure("manual test calibration of SPY through the API", repeat(runs, test))
    with tempfile.TemporaryDirectory() as outputs:

        def notebook() -> None:
            out = subprocess.run(
                [*IRLIB, "run", "p2_calibration_failures", "--outputs", outputs],
                capture_output=True, text=True, env=env, cwd=ROOT,
            )  # fmt: skip
            if out.returncode != 0:
                sys.exit(f"the notebook run exited {out.returncode}:\n{out.stderr}")

        figure(
            "irlib run p2_calibration_failures (healthy lab)", repeat(max(1, runs // 2), notebook)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--state-dir", help="a running lab to use (default: start one)")
    args = parser.parse_args()
    in_process(args.runs * 4)
    if args.state_dir:
        up = subprocess.run(
            [*IRLIB, "lab", "up", "--state-dir", args.state_dir],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        in_lab(args.runs, args.state_dir, exports(up.stdout))
        return
    with tempfile.TemporaryDirectory(prefix="irlib-bench-") as tmp:
        state = str(Path(tmp) / "lab")
        env = {k: v for k, v in os.environ.items() if k != "IRLIB_ADMIN_TOKEN"}
        up = subprocess.run(
            [*IRLIB, "lab", "up", "--state-dir", state],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        try:
            if up.returncode != 0:
                sys.exit(f"irlib lab up failed:\n{up.stderr}")
            in_lab(args.runs, state, exports(up.stdout))
        finally:
            subprocess.run(
                [*IRLIB, "lab", "down", "--purge", "--state-dir", state],
                capture_output=True, env=env,
            )  # fmt: skip


if __name__ == "__main__":
    main()
