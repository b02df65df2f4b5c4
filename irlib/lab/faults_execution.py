"""The lab faults of the P1 "Execution Failures" runbook: a broker that refuses our token,
rejects orders or answers slowly; books that disagree (positions, execution reports); an
execution-service that crash-loops. Listed in FAULTS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg

from irlib.errors import LabError
from irlib.lab.apps.positions import PLATFORM_BOOKS
from irlib.lab.config import BROKER_TOKEN_ENV, Control, Crash, read_control, update_control
from irlib.lab.fault_kit import (
    Fault,
    deployment_path,
    kube,
    pods,
    wait,
)
from irlib.lab.kube.cluster import BY_NAME
from irlib.lab.lab import Lab

FAULTS: list[Fault] = []  # this runbook's faults, in the order `irlib lab faults` lists them

P1_EXECUTION = "p1_execution_failures"
EXECUTION = "execution-service"
EXECUTION_PART = "execution"
REJECT_REASON = "risk check failed: order notional exceeds the account's daily limit"
LATENCY_S = 1.0
# position-mismatch: the platform's book of one account moves for these symbols only
MISMATCH_ACCOUNT = "ACC-002"
MISMATCH_DELTAS = {"AAPL": 50, "NVDA": -30, "TSLA": 120}
# missing-execution-reports: orders the broker fills whose reports never come back
MISSING_REPORTS = (
    ("ACC-001", "MSFT", "buy", 40),
    ("ACC-003", "SPY", "sell", 20),
    ("ACC-001", "QQQ", "buy", 70),
)
CRASH_LOG = [
    "INFO starting execution-service 2.4.0 on :8081",
    "INFO loading risk limits from /etc/trading/risk-limits.yaml",
    "Traceback (most recent call last):",
    '  File "/app/quant_trading/execution/main.py", line 57, in <module>',
    "    limits = RiskLimits.load(settings.risk_limits_path)",
    '  File "/app/quant_trading/execution/risk.py", line 112, in load',
    "    max_notional=Decimal(raw['max_order_notional']),",
    "decimal.InvalidOperation: [<class 'decimal.ConversionSyntax'>]",
]


def _broker_switch(key: str, value: Any) -> Callable[[Lab], None]:
    def switch(lab: Lab) -> None:
        def change(c: Control) -> None:
            broker = c.setdefault("broker", {})
            if value is None:
                broker.pop(key, None)
            else:
                broker[key] = value
            if not broker:
                c.pop("broker")

        update_control(lab.config, change)

    return switch


def _broker(lab: Lab, method: str, path: str, **kw: Any) -> httpx.Response:
    token = lab.tokens()["tokens"][BROKER_TOKEN_ENV]
    return httpx.request(
        method,
        lab.config.url("broker") + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        **kw,
    )


def _execution_log(lab: Lab, tail: int = 40) -> str:
    """What `kubectl logs -l app=execution-service --tail=N` prints."""
    out = []
    ns = lab.config.namespace
    for pod in pods(lab, EXECUTION):
        name = pod["metadata"]["name"]
        try:
            out.append(
                kube(lab, "GET", f"/api/v1/namespaces/{ns}/pods/{name}/log?tailLines={tail}").text
            )
        except httpx.HTTPError:
            continue
    return "\n".join(out)


def _sql(lab: Lab, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(lab.config.postgres_dsn, connect_timeout=5, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


# -- the broker --------------------------------------------------------------------------------


def _auth_visible(lab: Lab) -> bool:
    return _broker(
        lab, "GET", "/v1/auth/test"
    ).status_code == 401 and "authentication failed" in _execution_log(lab)


FAULTS.append(
    Fault(
        "broker-auth-failure",
        "the broker refuses our API token (401): orders stay unsent",
        _broker_switch("auth_revoked", True),
        _broker_switch("auth_revoked", None),
        _auth_visible,
        runbook=P1_EXECUTION,
    )
)


def _rejects_visible(lab: Lab) -> bool:
    """Visible once the broker is rejecting *now*: the latest order rejected, and most of the
    latest 10 (what the runbook's rejection check asks, so a drill never races the flow)."""
    latest = _broker(lab, "GET", "/v1/orders?limit=10").json()["orders"]
    rejected = [o for o in latest if o.get("reject_reason") == REJECT_REASON]
    return (
        bool(latest)
        and latest[0].get("reject_reason") == REJECT_REASON
        and (len(rejected) * 2 > len(latest))
    )


def _clear_rejects(lab: Lab) -> None:
    """Lift the rejections, then wait for the broker to fill a new order: until it does, its
    latest answers are still rejections."""
    started = _sql(lab, "SELECT now()")[0][0]
    _broker_switch("reject_reason", None)(lab)
    wait(
        "the broker to fill an order again",
        lambda: bool(
            _sql(
                lab,
                "SELECT 1 FROM broker.orders WHERE created_at > %s AND status = 'filled' LIMIT 1",
                (started,),
            )
        ),
        30,
    )


FAULTS.append(
    Fault(
        "broker-rejects",
        f"the broker rejects every order: {REJECT_REASON}",
        _broker_switch("reject_reason", REJECT_REASON),
        _clear_rejects,
        _rejects_visible,
        runbook=P1_EXECUTION,
    )
)


def _latency_visible(lab: Lab) -> bool:
    t0 = time.monotonic()
    _broker(lab, "GET", "/v1/status")
    return time.monotonic() - t0 >= LATENCY_S * 0.9


FAULTS.append(
    Fault(
        "broker-latency",
        f"the broker answers every API call {LATENCY_S:g} s late",
        _broker_switch("latency_s", LATENCY_S),
        _broker_switch("latency_s", None),
        _latency_visible,
        runbook=P1_EXECUTION,
    )
)

# -- the books -----------------------------------------------------------------------------------


def _shift_positions(lab: Lab, sign: int) -> None:
    deltas = read_control(lab.config).get("position_mismatch", {}).get("deltas", MISMATCH_DELTAS)
    for symbol, delta in deltas.items():
        found = _sql(
            lab,
            "UPDATE positions SET qty = qty + %s, updated_at = now()"
            " WHERE account = %s AND symbol = %s RETURNING 1",
            (sign * delta, MISMATCH_ACCOUNT, symbol),
        )
        if not found:
            raise LabError(f"position-mismatch: {MISMATCH_ACCOUNT} holds no {symbol}")


def _inject_mismatch(lab: Lab) -> None:
    update_control(
        lab.config,
        lambda c: c.update(
            {"position_mismatch": {"account": MISMATCH_ACCOUNT, "deltas": MISMATCH_DELTAS}}
        ),
    )
    _shift_positions(lab, +1)


def _clear_mismatch(lab: Lab) -> None:
    _shift_positions(lab, -1)
    update_control(lab.config, lambda c: c.pop("position_mismatch", None))


def _mismatch_visible(lab: Lab) -> bool:
    rows = _sql(
        lab,
        "SELECT p.symbol FROM positions p JOIN broker.positions b"
        " ON b.account_id = p.account AND b.symbol = p.symbol"
        " WHERE p.account = %s AND p.qty <> b.qty",
        (MISMATCH_ACCOUNT,),
    )
    return {r[0] for r in rows} >= set(MISMATCH_DELTAS)


FAULTS.append(
    Fault(
        "position-mismatch",
        f"the platform's positions of {MISMATCH_ACCOUNT} differ from the broker's for "
        f"{', '.join(MISMATCH_DELTAS)}",
        _inject_mismatch,
        _clear_mismatch,
        _mismatch_visible,
        runbook=P1_EXECUTION,
    )
)


def _inject_missing_reports(lab: Lab) -> None:
    """Orders sent and filled at the broker whose execution reports never came back: the
    platform keeps them `submitted`, its positions unchanged."""
    ids = []
    for account, symbol, side, qty in MISSING_REPORTS:
        (order_id,) = _sql(
            lab,
            "INSERT INTO orders (strategy_id, account, symbol, side, qty, state)"
            " SELECT min(id), %s, %s, %s, %s, 'submitted' FROM strategies RETURNING id",
            (account, symbol, side, qty),
        )[0]
        resp = _broker(
            lab,
            "POST",
            "/v1/orders",
            json={
                "account": account,
                "symbol": symbol,
                "side": side,
                "qty": qty,
                "client_order_id": f"ORD-{order_id}",
            },
        )
        if resp.status_code != 201:
            raise LabError(f"missing-execution-reports: the broker answered {resp.status_code}")
        ids.append(order_id)
    update_control(lab.config, lambda c: c.update({"missing_reports": {"orders": ids}}))


def _unreported(lab: Lab, ids: list[int]) -> list[tuple[Any, ...]]:
    return _sql(
        lab,
        "SELECT o.id, o.account, o.symbol, o.side, o.qty, b.order_id, f.fill_id, f.price"
        " FROM orders o JOIN broker.orders b ON b.client_order_id = 'ORD-' || o.id"
        " JOIN broker.fills f ON f.order_id = b.order_id"
        " WHERE o.id = ANY(%s) AND NOT EXISTS"
        " (SELECT 1 FROM execution_reports e WHERE e.broker_fill_id = f.fill_id)",
        (ids,),
    )


def _clear_missing_reports(lab: Lab) -> None:
    """The lost reports arrive at last: book them as the execution-service would have."""
    ids = read_control(lab.config).get("missing_reports", {}).get("orders", [])
    with psycopg.connect(lab.config.postgres_dsn, connect_timeout=5) as conn, conn.transaction():
        for order_id, account, symbol, side, qty, broker_id, fill_id, price in _unreported(
            lab, ids
        ):
            row = {
                "id": order_id,
                "account": account,
                "symbol": symbol,
                "qty": qty,
                "broker_order_id": broker_id,
                "fill_id": fill_id,
                "price": price,
                "signed_qty": qty if side == "buy" else -qty,
            }
            conn.execute(
                "UPDATE orders SET state = 'filled', broker_order_id = %(broker_order_id)s,"
                " price = %(price)s, updated_at = now() WHERE id = %(id)s",
                row,
            )
            conn.execute(
                "INSERT INTO execution_reports (order_id, broker_fill_id, qty, price, executed_at)"
                " VALUES (%(id)s, %(fill_id)s, %(qty)s, %(price)s, now())",
                row,
            )
            conn.execute(PLATFORM_BOOKS, row)
    update_control(lab.config, lambda c: c.pop("missing_reports", None))


FAULTS.append(
    Fault(
        "missing-execution-reports",
        f"{len(MISSING_REPORTS)} fills at the broker that the platform never recorded",
        _inject_missing_reports,
        _clear_missing_reports,
        lambda lab: (
            len(
                _unreported(
                    lab, read_control(lab.config).get("missing_reports", {}).get("orders", [])
                )
            )
            == len(MISSING_REPORTS)
        ),
        runbook=P1_EXECUTION,
    )
)

# -- the execution-service ------------------------------------------------------------------------


def _execution_image() -> str:
    return BY_NAME[EXECUTION].image


def _inject_crash(lab: Lab) -> None:
    crash: Crash = {"reason": "Error", "exit_code": 1, "log": CRASH_LOG}
    update_control(
        lab.config,
        lambda c: c.setdefault("crashing_images", {}).update({_execution_image(): crash}),
    )
    lab.stop_part(EXECUTION_PART)


def _clear_crash(lab: Lab) -> None:
    def forget(c: Control) -> None:
        images = c.get("crashing_images") or {}
        images.pop(_execution_image(), None)
        if not images:
            c.pop("crashing_images", None)

    update_control(lab.config, forget)
    lab.start_part(EXECUTION_PART)
    # what an operator does once the fix is out: new pods, no crash history on them
    restarted = {
        "kubectl.kubernetes.io/restartedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    }
    kube(
        lab,
        "PATCH",
        deployment_path(lab, EXECUTION),
        {"spec": {"template": {"metadata": {"annotations": restarted}}}},
    )


def _crash_visible(lab: Lab) -> bool:
    return not lab.running(EXECUTION_PART) and any(
        cs.get("restartCount", 0) > 0
        for p in pods(lab, EXECUTION)
        for cs in p["status"].get("containerStatuses", [])
    )


FAULTS.append(
    Fault(
        "execution-service-crash",
        "execution-service pods crash-loop on start (bad risk-limits config); no order is sent",
        _inject_crash,
        _clear_crash,
        _crash_visible,
        runbook=P1_EXECUTION,
        stops=EXECUTION_PART,
    )
)
