"""Read-only checks of the platform's records: which strategies run, which orders wait (and
for how long); and the reads a reconciliation needs (positions, recorded fills, prices)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from irlib.postgres import query
from irlib.results import Check, Evidence, Status, guarded

TARGET = "platform"


def _guarded(name: str, body: Callable[[], Check]) -> Check:
    return guarded(name, TARGET, body, what="cannot read the platform database")


def strategies(
    dsn: str, *, timeout_s: float, password_env: str | None = None
) -> list[dict[str, Any]]:
    return query(
        dsn,
        "SELECT id, name, paused, updated_at FROM strategies ORDER BY id",
        timeout_s=timeout_s,
        password_env=password_env,
    )


def check_strategies(dsn: str, *, timeout_s: float = 5.0, password_env: str | None = None) -> Check:
    """Which strategies are running (submitting orders) and which are paused."""

    def body() -> Check:
        rows = strategies(dsn, timeout_s=timeout_s, password_env=password_env)
        running = [r["name"] for r in rows if not r["paused"]]
        paused = [r["name"] for r in rows if r["paused"]]
        summary = (
            f"{len(running)} running: {', '.join(running)}"
            if running
            else f"all {len(paused)} strategies paused"
        )
        return Check(
            "strategies",
            TARGET,
            Status.OK,
            summary,
            (Evidence.table("strategies", rows),),
            facts={"running": running, "paused": paused, "all_paused": not running},
        )

    return _guarded("strategies", body)


PENDING = """
    SELECT o.id, s.name AS strategy, o.account, o.symbol, o.side, o.qty, o.state,
           o.broker_order_id, o.created_at,
           round(extract(epoch FROM now() - o.created_at)::numeric, 1)::float8 AS age_s
    FROM orders o JOIN strategies s ON s.id = o.strategy_id
    WHERE o.state IN ('new', 'submitted') ORDER BY o.created_at LIMIT %s
"""


def pending_orders(
    dsn: str, *, timeout_s: float, password_env: str | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    return query(dsn, PENDING, (limit,), timeout_s=timeout_s, password_env=password_env)


def check_pending_orders(
    dsn: str, *, max_age_s: float = 60.0, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    """Orders not yet filled, rejected or cancelled, oldest first, with their age: `new` ones
    were never sent; `submitted` ones were sent and await the broker's answer."""

    def body() -> Check:
        rows = pending_orders(dsn, timeout_s=timeout_s, password_env=password_env)
        old = [r for r in rows if r["age_s"] > max_age_s]
        unsent_old = [r for r in old if r["state"] == "new"]
        by_strategy: dict[str, int] = {}
        for r in rows:
            by_strategy[r["strategy"]] = by_strategy.get(r["strategy"], 0) + 1
        facts = {
            "count": len(rows),
            "old": len(old),
            "unsent_old": len(unsent_old),
            "oldest_age_s": max((r["age_s"] for r in rows), default=0.0),
            "by_strategy": by_strategy,
            "ids": [r["id"] for r in rows],
        }
        summary = (
            f"{len(rows)} pending ({len(old)} older than {max_age_s:g} s, "
            f"oldest {facts['oldest_age_s']:.0f} s)"
            if rows
            else "no pending order"
        )
        return Check(
            "pending orders",
            TARGET,
            Status.WARN if old else Status.OK,
            summary,
            (Evidence.table("pending orders, oldest first", rows),),
            facts=facts,
        )

    return _guarded("pending orders", body)


def positions(
    dsn: str, *, timeout_s: float, password_env: str | None = None
) -> list[dict[str, Any]]:
    return query(
        dsn,
        "SELECT account, symbol, qty, avg_price FROM positions",
        timeout_s=timeout_s,
        password_env=password_env,
    )


def recorded_fills(
    dsn: str, fill_ids: Iterable[str], *, timeout_s: float, password_env: str | None = None
) -> set[str]:
    """Which of these broker fill ids the platform holds an execution report for."""
    ids = sorted(set(fill_ids))
    if not ids:
        return set()
    rows = query(
        dsn,
        "SELECT broker_fill_id FROM execution_reports WHERE broker_fill_id = ANY(%s)",
        (ids,),
        timeout_s=timeout_s,
        password_env=password_env,
    )
    return {r["broker_fill_id"] for r in rows}


def latest_prices(
    dsn: str, symbols: Iterable[str], *, timeout_s: float, password_env: str | None = None
) -> dict[str, float]:
    """The last traded price of each symbol, from the platform's market data."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    rows = query(
        dsn,
        "SELECT s.symbol, t.last FROM unnest(%s::text[]) AS s(symbol) CROSS JOIN LATERAL"
        " (SELECT last FROM market_data_ticks m WHERE m.symbol = s.symbol"
        " ORDER BY ts DESC LIMIT 1) t",
        (wanted,),
        timeout_s=timeout_s,
        password_env=password_env,
    )
    return {r["symbol"]: float(r["last"]) for r in rows}
