"""What the execution-service and the calibration-service export to Prometheus: the metrics
irlib's alert rules (irlib.alerts.rules) read, under the names those rules use.

Counters move as the service works; gauges of the books (open orders, mismatched positions,
fills without a report, calibrations, surfaces) are read from PostgreSQL at scrape time, so a
fault that changes the tables behind a service's back shows at the next scrape. A read that
fails leaves those gauges NaN: no value, never a healthy one.
"""

from __future__ import annotations

import math
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from irlib.alerts import rules as names
from irlib.lab.apps._common import Database, Unavailable

# A `submitted` order rests at the broker (a limit order may wait all day); a `new` order of a
# running strategy should reach the broker within a second or two of the service running: the
# seed's new orders wait for the service to start, which is no fault.
UNSENT_ORDER_AGE_SQL = """SELECT CASE WHEN min(o.created_at) IS NULL THEN 0
        ELSE extract(epoch FROM now() - greatest(min(o.created_at), to_timestamp(%(started)s)))
        END AS age
    FROM orders o JOIN strategies s ON s.id = o.strategy_id
    WHERE o.state = 'new' AND NOT s.paused"""
MISMATCHES_SQL = """SELECT count(*) AS n FROM positions p FULL JOIN broker.positions b
    ON b.account_id = p.account AND b.symbol = p.symbol
    WHERE coalesce(p.qty, 0) <> coalesce(b.qty, 0)"""
# A fill younger than a few seconds may be on its way to being booked: not missing yet. The
# broker keeps a day of orders; its client order id is the platform's `ORD-<id>`.
FILLS_WITHOUT_REPORT_SQL = """SELECT count(*) AS n FROM broker.fills f
    JOIN broker.orders b ON b.order_id = f.order_id
    WHERE f.executed_at > now() - interval '1 day' AND f.executed_at < now() - interval '5 s'
      AND NOT EXISTS (SELECT 1 FROM execution_reports e
                      WHERE e.broker_fill_id = f.fill_id
                        AND e.order_id = CASE WHEN b.client_order_id ~ '^ORD-[0-9]+$'
                                              THEN substr(b.client_order_id, 5)::bigint END)"""
LAST_TICKS_SQL = """SELECT s.symbol, extract(epoch FROM t.ts) AS ts
    FROM (SELECT DISTINCT symbol FROM calibrations) s
    CROSS JOIN LATERAL (SELECT ts FROM market_data_ticks m WHERE m.symbol = s.symbol
                        ORDER BY ts DESC LIMIT 1) t"""


def metrics_response(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class ExecutionMetrics:
    """The execution-service's orders as they go, and the books as they stand."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.sent = Counter(names.ORDERS_SENT, "Orders the broker answered.", registry=r)
        self.filled = Counter(names.ORDERS_FILLED, "Orders the broker filled.", registry=r)
        self.rejected = Counter(
            names.ORDERS_REJECTED, "Orders the broker rejected.", ["reason"], registry=r
        )
        self.last_fill = Gauge(
            names.LAST_FILL,
            "When an order was last filled (the service's start before).",
            registry=r,
        )
        self.started = time.time()
        self.last_fill.set(self.started)
        self.unsent_order_age = Gauge(
            names.UNSENT_ORDER_AGE,
            "Age of the oldest order of a running strategy not yet sent.",
            registry=r,
        )
        self.mismatches = Gauge(
            names.POSITION_MISMATCHES,
            "Account/symbol positions that differ between the platform and the broker.",
            registry=r,
        )
        self.unreported = Gauge(
            names.FILLS_WITHOUT_REPORT,
            "Broker fills of the last day without an execution report.",
            registry=r,
        )

    def filled_now(self) -> None:
        self.sent.inc()
        self.filled.inc()
        self.last_fill.set(time.time())

    def rejected_now(self, reason: str) -> None:
        self.sent.inc()
        self.rejected.labels(reason[:60]).inc()

    async def refresh(self, db: Database) -> None:
        gauges = (
            (self.unsent_order_age, UNSENT_ORDER_AGE_SQL, "age", {"started": self.started}),
            (self.mismatches, MISMATCHES_SQL, "n", None),
            (self.unreported, FILLS_WITHOUT_REPORT_SQL, "n", None),
        )
        for gauge, sql, column, params in gauges:
            try:
                row = await db.fetch_one(sql, params)
            except Unavailable:
                row = None
            gauge.set(float(row[column]) if row else math.nan)


class CalibrationMetrics:
    """Per symbol: the last calibration attempt and success, its surface and its last tick."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        by_symbol = ["symbol"]
        self.last_success = Gauge(
            names.CALIBRATION_LAST_SUCCESS,
            "When the symbol last calibrated.",
            by_symbol,
            registry=r,
        )
        self.converged = Gauge(
            names.CALIBRATION_CONVERGED,
            "1 if the last attempt converged.",
            by_symbol,
            registry=r,
        )
        self.rmse = Gauge(names.CALIBRATION_RMSE, "The last attempt's RMSE.", by_symbol, registry=r)
        self.duration = Gauge(
            names.CALIBRATION_DURATION, "How long the last attempt took.", by_symbol, registry=r
        )
        self.surface = Gauge(
            names.SURFACE_QUOTES,
            "Quotes in the symbol's newest surface (0: missing).",
            by_symbol,
            registry=r,
        )
        self.last_tick = Gauge(
            names.LAST_TICK,
            "When the symbol's newest market-data tick was stamped.",
            by_symbol,
            registry=r,
        )
        self._all = (
            self.last_success,
            self.converged,
            self.rmse,
            self.duration,
            self.surface,
            self.last_tick,
        )

    async def refresh(self, db: Database, status_sql: str, window_s: float) -> None:
        try:
            rows = await db.fetch(status_sql, {"window": window_s})
            ticks = await db.fetch(LAST_TICKS_SQL)
        except Unavailable:
            for gauge in self._all:
                gauge.clear()  # no answer: no value, rather than the last good one
            return
        for row in rows:
            s = row["symbol"]
            success = row["last_success_at"]
            self.last_success.labels(s).set(success.timestamp() if success else math.nan)
            self.converged.labels(s).set(1.0 if row["converged"] else 0.0)
            self.rmse.labels(s).set(_number(row["rmse"]))
            self.duration.labels(s).set(_number(row["duration_s"]))
            self.surface.labels(s).set(float(row["surface_quotes"] or 0))
        for tick in ticks:
            self.last_tick.labels(tick["symbol"]).set(float(tick["ts"]))


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


async def serve_metrics(request: Request) -> Response:
    """`/metrics` of an app whose state holds `metrics` and a coroutine `refresh_metrics`."""
    await request.app.state.refresh_metrics()
    return metrics_response(request.app.state.metrics.registry)
