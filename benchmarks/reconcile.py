"""Benchmark: the P1 Execution Failures reconciliation of 10,000 positions across 50 accounts.

    .venv/bin/python benchmarks/reconcile.py [--accounts 50] [--symbols 200] [--runs 3]

Starts its own lab in a temporary state dir, adds the accounts (at the broker), their
positions (in both books, a few deliberately different) and a price for every symbol, then
times what the runbook does: one snapshot (every account's positions through the broker's
API, the platform's positions and prices from PostgreSQL, the fills of the last day), the
pure reconciliation alone, and the whole step (two snapshots; the pause between them is set
to 0 here). Prints one line per figure; stops and deletes the lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
IRLIB = [sys.executable, "-m", "irlib.cli"]
MISMATCHES = 7


def lab_env(state: Path) -> dict[str, str]:
    import shlex

    env = {k: v for k, v in os.environ.items() if not k.startswith("IRLIB_")}
    up = subprocess.run(
        [*IRLIB, "lab", "up", "--state-dir", str(state)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    if up.returncode != 0:
        sys.exit(f"irlib lab up failed:\n{up.stderr}")
    for line in up.stdout.splitlines():
        if line.startswith("export "):
            k, _, v = line[7:].partition("=")
            env[k] = shlex.split(v)[0]
    return env


def build(dsn: str, accounts: int, symbols: int) -> None:
    """The same books on both sides, then MISMATCHES positions moved on the platform's side;
    strategies paused so that the lab's own flow does not move anything meanwhile."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE strategies SET paused = true")
        conn.execute(
            "INSERT INTO broker.accounts (account_id, name, cash) SELECT 'BENCH-' ||"
            " lpad(a::text, 3, '0'), 'Benchmark ' || a, 1e7 FROM generate_series(1, %s) a",
            (accounts,),
        )
        conn.execute(
            "INSERT INTO market_data_ticks (symbol, ts, bid, ask, last, volume)"
            " SELECT 'S' || lpad(s::text, 4, '0'), now(), 99.9, 100.1, 100 + s %% 50, 100"
            " FROM generate_series(1, %s) s",
            (symbols,),
        )
        book = (
            "SELECT 'BENCH-' || lpad(a::text, 3, '0'), 'S' || lpad(s::text, 4, '0'),"
            " (a * 7 + s * 13) %% 500 + 1, 100 FROM generate_series(1, %s) a,"
            " generate_series(1, %s) s"
        )
        conn.execute(
            f"INSERT INTO broker.positions (account_id, symbol, qty, avg_price) {book}",
            (accounts, symbols),
        )
        conn.execute(
            f"INSERT INTO positions (account, symbol, qty, avg_price) {book}", (accounts, symbols)
        )
        conn.execute(
            "UPDATE positions SET qty = qty + 10 WHERE (account, symbol) IN (SELECT account,"
            " symbol FROM positions WHERE account LIKE 'BENCH-%%' ORDER BY account, symbol"
            " LIMIT %s)",
            (MISMATCHES,),
        )
        conn.execute("ANALYZE positions, broker.positions")


def breakdown(rb: object) -> dict[str, float]:
    """Where one snapshot's time goes, read by read (the same calls as snapshot())."""
    from datetime import UTC, datetime, timedelta

    from irlib.broker import checks as broker
    from irlib.platform import checks as platform

    dsn, db, b = rb.profile.postgres.dsn, rb._db(), rb.broker  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    internal = platform.positions(dsn, **db)
    out["platform positions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    accounts = sorted(set(broker.accounts(b)) | {r["account"] for r in internal})
    out["broker accounts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held = broker.positions(b, accounts)
    out[f"broker positions ({len(accounts)} accounts)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fills = broker.fills(b, since=datetime.now(UTC) - timedelta(days=1))
    out[f"broker fills ({len(fills)})"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    platform.recorded_fills(dsn, (f["fill_id"] for f in fills), **db)
    out["recorded fills"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    platform.latest_prices(dsn, {r["symbol"] for r in held}, **db)
    out["prices"] = time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="irlib-bench-reconcile-"))
    env = lab_env(state)
    try:
        os.environ.update(env)
        from irlib import reconciliation as rec
        from irlib.lab.config import LabConfig
        from irlib.runbooks.p1_execution_failures import ExecutionFailures

        build(LabConfig.load(state).postgres_dsn, args.accounts, args.symbols)
        rb = ExecutionFailures(reconcile_confirm_s=0.0, reconcile_timeout_s=120.0)
        snapshots, pure, whole = [], [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            snap = rb.snapshot()
            snapshots.append(time.perf_counter() - t0)
            rows_b = [ln.__dict__ | {"qty": ln.broker_qty} for ln in snap.lines]
            rows_i = [ln.__dict__ | {"qty": ln.internal_qty} for ln in snap.lines]
            prices = {ln.symbol: ln.price for ln in snap.lines if ln.price is not None}
            t0 = time.perf_counter()
            rec.reconcile(rows_b, rows_i, prices, snap.unreported)
            pure.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            step = rb.reconcile_positions()
            whole.append(time.perf_counter() - t0)
        parts = breakdown(rb)
        check = step["position reconciliation"]
        bench = [ln for ln in snap.lines if ln.account.startswith("BENCH-")]
        found = [m for m in check.facts["mismatches"] if m["account"].startswith("BENCH-")]
        print(
            f"positions reconciled: {len(snap.lines)} ({len(bench)} in "
            f"{args.accounts} benchmark accounts), mismatches found: {len(found)} of "
            f"{MISMATCHES} planted; check status {check.status.value}"
        )
        print(
            f"one snapshot (broker API + PostgreSQL): median {statistics.median(snapshots):.2f} s"
            f" over {args.runs} runs"
        )
        print(f"pure reconciliation: median {statistics.median(pure) * 1000:.1f} ms")
        print(
            f"reconcile step (2 snapshots, confirm pause 0): median "
            f"{statistics.median(whole):.2f} s"
        )
        print("one snapshot's reads: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))
    finally:
        subprocess.run([*IRLIB, "lab", "down", "--purge", "--state-dir", str(state)],
                       capture_output=True, env=env, timeout=120)  # fmt: skip


if __name__ == "__main__":
    main()
