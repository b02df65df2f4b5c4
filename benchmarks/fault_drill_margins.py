"""Benchmark: the fault drill N times in a row, with each fault's result and margin.

    .venv/bin/python benchmarks/fault_drill_margins.py [--rounds 3] [--hog] [--state-dir DIR]

First each runbook runs once on the healthy lab: its verdict and every check's detail are the
healthy side of the margin (how far below its thresholds a healthy lab stays). Then
`irlib drill faults` runs `--rounds` times; for each fault and round it prints the outcome,
the score of the fault's own cause, the runner-up cause and its score (how clearly the verdict
names the fault), the time to the verdict, and the cause's evidence line: the symptom as the
runbook measured it under the fault. `--hog` keeps every core spinning throughout (the loaded
machine of tests/e2e/test_drill.py). Starts and stops its own lab unless --state-dir names a
running one. Exit 0 only when every round diagnosed every fault.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from lab_and_run import IRLIB, exports  # noqa: E402

from irlib.runbooks import SCENARIOS  # noqa: E402


@contextmanager
def cpu_hog(on: bool) -> Iterator[None]:
    spin = [sys.executable, "-c", "while True: pass"]
    hogs = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 1)] if on else []
    try:
        yield
    finally:
        for p in hogs:
            p.kill()
            p.wait()


@contextmanager
def lab(state_dir: Path | None) -> Iterator[tuple[Path, dict[str, str]]]:
    """The running lab in `state_dir`, or one of our own in a temporary folder."""
    own = state_dir is None
    state = Path(tempfile.mkdtemp(prefix="irlib-margins-")) if own else state_dir
    up = subprocess.run(
        [*IRLIB, "lab", "up", "--state-dir", str(state)], capture_output=True, text=True
    )
    if up.returncode != 0:
        sys.exit(f"irlib lab up failed ({up.returncode}):\n{up.stderr}")
    try:
        yield state, exports(up.stdout)
    finally:
        if own:
            subprocess.run(
                [*IRLIB, "lab", "down", "--purge", "--state-dir", str(state)], capture_output=True
            )


def healthy_side(env: dict[str, str], outputs: Path) -> bool:
    print("== healthy lab: each runbook's verdict and checks")
    ok = True
    for name in SCENARIOS:
        t0 = time.perf_counter()
        out = subprocess.run(
            [*IRLIB, "run", name, "--outputs", str(outputs)], capture_output=True, text=True,
            env=env,
        )  # fmt: skip
        took = time.perf_counter() - t0
        run_dir = Path(out.stdout.strip().splitlines()[-1])
        results = json.loads((run_dir / "results.json").read_text())
        verdict = results["verdict"]
        ok &= out.returncode == 0
        print(f"{name}: exit {out.returncode}, {took:.1f} s; {verdict['summary']}")
        for check in results["checks"]:
            print(f"    {check['status']:<5} {check['check']}: {check['summary']}")
    return ok


def drill_round(i: int, state: Path, env: dict[str, str], outputs: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [*IRLIB, "drill", "faults", "--state-dir", str(state), "--outputs", str(outputs / str(i))],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    took = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    if not lines or not (Path(lines[-1]) / "matrix.json").is_file():
        sys.exit(f"round {i}: the fault drill left no matrix ({out.returncode}):\n{out.stderr}")
    matrix = json.loads((Path(lines[-1]) / "matrix.json").read_text())
    timings = {t["fault"]: t for t in matrix["timings"]}
    print(f"== round {i}: {lines[-2]} ({took:.0f} s wall)")
    for c in matrix["cells"]:
        score = f"{c['score']:.2f}" if c["score"] is not None else "-"
        other = f"{c['runner_up']} {c['runner_up_score']:.2f}" if c["runner_up"] else "none"
        ttv = f"{c['time_to_verdict_s']:.1f} s" if c["time_to_verdict_s"] is not None else "-"
        print(
            f"{c['fault']:<24} {c['runbook']:<24} {c['outcome']:<9} score {score:<5} "
            f"runner-up {other:<32} verdict {ttv:>7}  fault {timings[c['fault']]['total_s']:.1f} s"
        )
        print(f"    evidence: {c['evidence'] or c['reason'] or '-'}")
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fault drills in a row (3)")
    parser.add_argument("--hog", action="store_true", help="keep every core busy throughout")
    parser.add_argument("--state-dir", type=Path, help="a running lab (default: start one)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    outputs = Path(tempfile.mkdtemp(prefix="irlib-margins-out-"))
    print(f"machine: {os.cpu_count()} cores; {'every core busy' if args.hog else 'idle'}")
    with lab(args.state_dir) as (state, env), cpu_hog(args.hog):
        healthy = healthy_side(env, outputs)
        rounds = [drill_round(i, state, env, outputs) for i in range(1, args.rounds + 1)]
    print("== summary")
    for i, m in enumerate(rounds, 1):
        done = sum(c["outcome"] == "diagnosed" for c in m["cells"])
        print(f"round {i}: {done} of {len(m['cells'])} diagnosed in {m['duration_s']:.0f} s")
    print(f"healthy lab: {'every runbook healthy' if healthy else 'NOT healthy (see above)'}")
    print(f"evidence kept in {outputs}")
    sys.exit(0 if healthy and all(m["exit_code"] == 0 for m in rounds) else 1)


if __name__ == "__main__":
    main()
