"""Guarded writes to the platform (run only through irlib.guard): pause every strategy through
the admin API, and cancel the unsent orders of a strategy (or of all). Each has a plan that
shows what it will change before anything does."""

from __future__ import annotations

from typing import Any

from irlib import transport
from irlib.errors import Refused
from irlib.guard import Plan
from irlib.platform.checks import pending_orders, strategies
from irlib.postgres import write

PAUSE_PATH = "/v1/admin/pause-all"


def plan_pause_all(
    dsn: str,
    api_url: str,
    *,
    token_env: str | None,
    timeout_s: float,
    password_env: str | None = None,
    recommended: bool = True,
) -> Plan:
    rows = strategies(dsn, timeout_s=timeout_s, password_env=password_env)
    running = [r["name"] for r in rows if not r["paused"]]
    return Plan(
        "pause-all",
        f"pause all {len(rows)} strategies ({len(running)} running: "
        f"{', '.join(running) or 'none'}); no new order is submitted while paused",
        f'curl -X POST {api_url}{PAUSE_PATH} -H "Authorization: Bearer ${token_env}"',
        before={"running": running},
        recommended=recommended,
    )


def apply_pause_all(
    dsn: str,
    api_url: str,
    *,
    token_env: str | None,
    timeout_s: float,
    password_env: str | None = None,
) -> dict[str, Any]:
    """Pause through the admin API, then read the strategies back: the result says whether
    every one of them is paused now."""
    answer = transport.request(
        "POST", api_url + PAUSE_PATH, timeout_s=timeout_s, token_env=token_env
    )
    if answer.status_code != 200:
        raise Refused(
            f"POST {PAUSE_PATH}: HTTP {answer.status_code} {answer.error}", answer.status_code
        )
    said = answer.body if isinstance(answer.body, dict) else {}
    rows = strategies(dsn, timeout_s=timeout_s, password_env=password_env)
    still = [r["name"] for r in rows if not r["paused"]]
    if still:
        raise RuntimeError(f"pause-all answered, but still running: {', '.join(still)}")
    return {"paused": said.get("paused", []), "all_paused": True, "strategies": len(rows)}


def _unsent(
    dsn: str, strategy: str, timeout_s: float, password_env: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [
        r
        for r in pending_orders(dsn, timeout_s=timeout_s, password_env=password_env)
        if strategy == "all" or r["strategy"] == strategy
    ]
    return [r for r in rows if r["state"] == "new"], [r for r in rows if r["state"] != "new"]


def plan_cancel_orders(
    dsn: str,
    strategy: str,
    *,
    timeout_s: float,
    password_env: str | None = None,
    recommended: bool = True,
) -> Plan:
    if strategy != "all":
        names = {r["name"] for r in strategies(dsn, timeout_s=timeout_s, password_env=password_env)}
        if strategy not in names:
            raise ValueError(f"no strategy {strategy!r}; strategies: {', '.join(sorted(names))}")
    unsent, sent = _unsent(dsn, strategy, timeout_s, password_env)
    who = "every strategy" if strategy == "all" else f"strategy {strategy}"
    return Plan(
        f"cancel-orders:{strategy}",
        f"cancel the {len(unsent)} unsent (new) order(s) of {who}; the {len(sent)} already "
        "sent to the broker (submitted) are left to confirm with the broker",
        "UPDATE orders SET state = 'cancelled' WHERE state = 'new'"
        + (
            ""
            if strategy == "all"
            else f" AND strategy_id = (SELECT id FROM strategies WHERE name = '{strategy}')"
        ),
        before={"unsent": [r["id"] for r in unsent], "sent": [r["id"] for r in sent]},
        recommended=recommended,
    )


def apply_cancel_orders(
    dsn: str, strategy: str, *, timeout_s: float, password_env: str | None = None
) -> dict[str, Any]:
    rows = write(
        dsn,
        "UPDATE orders o SET state = 'cancelled', updated_at = now() FROM strategies s"
        " WHERE s.id = o.strategy_id AND o.state = 'new'"
        " AND (%(strategy)s = 'all' OR s.name = %(strategy)s) RETURNING o.id",
        {"strategy": strategy},
        timeout_s=timeout_s,
        password_env=password_env,
    )
    _, sent = _unsent(dsn, strategy, timeout_s, password_env)
    return {
        "cancelled": sorted(r["id"] for r in rows),
        "to_confirm_with_broker": [
            {"id": r["id"], "broker_order_id": r["broker_order_id"]} for r in sent
        ],
    }
