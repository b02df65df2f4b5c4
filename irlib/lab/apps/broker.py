"""The external broker's API: status, authentication test, positions, orders and fills.

Keeps its books in the `broker` schema of the lab's PostgreSQL and fills market orders at the
latest tick price. Every /v1 route but /v1/status wants the broker bearer token. The lab's
control file can make it refuse that token, reject orders with a reason, or answer slowly.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irlib.io import utcnow
from irlib.lab.apps._common import (
    Database,
    Json,
    Unavailable,
    bearer_ok,
    error,
    iso,
    json_body,
    serve,
    unauthorized,
    unavailable_handler,
)
from irlib.lab.apps.positions import BROKER_BOOKS
from irlib.lab.config import BROKER_TOKEN_ENV, LabConfig, read_control

ORDER_COLUMNS = "order_id, account_id, client_order_id, symbol, side, qty, limit_price, status, \
reject_reason, created_at, updated_at"

Endpoint = Callable[[Request], Awaitable[Response]]


class Faults:
    """The broker's fault switches, re-read from control.json when the file changes."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self._mtime = -1.0
        self.now: dict[str, Any] = {}

    def get(self) -> dict[str, Any]:
        try:
            mtime = self.config.control_file.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime != self._mtime:
            self._mtime = mtime
            self.now = dict(read_control(self.config).get("broker") or {})
        return self.now


def slowed(endpoint: Endpoint) -> Endpoint:
    """An answer delayed by the broker-latency fault (/health stays quick: the platform's
    own health check must not turn a slow broker into an outage)."""

    async def slow(request: Request) -> Response:
        delay = float(request.app.state.faults.get().get("latency_s") or 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        return await endpoint(request)

    return slow


def authenticated(endpoint: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        revoked = request.app.state.faults.get().get("auth_revoked")
        if revoked or not bearer_ok(request, BROKER_TOKEN_ENV):
            return unauthorized()
        return await endpoint(request)

    return slowed(guarded)


async def health(request: Request) -> Response:
    try:
        await request.app.state.db.fetch_one("SELECT 1")
    except Unavailable as e:
        return Json({"status": "unavailable", "error": str(e)}, status_code=503)
    return Json({"status": "ok", "database": "ok"})


@slowed
async def status(request: Request) -> Response:
    return Json({"status": "operational", "api_version": "v1", "server_time": iso(utcnow())})


@authenticated
async def auth_test(request: Request) -> Response:
    rows = await request.app.state.db.fetch(
        "SELECT account_id FROM broker.accounts WHERE status = 'active' ORDER BY account_id"
    )
    return Json({"authenticated": True, "accounts": [r["account_id"] for r in rows]})


@authenticated
async def account_positions(request: Request) -> Response:
    account = request.path_params["account"]
    db = request.app.state.db
    known = await db.fetch_one("SELECT 1 FROM broker.accounts WHERE account_id = %s", (account,))
    if known is None:
        return error(404, f"unknown account {account}")
    rows = await db.fetch(
        "SELECT symbol, qty, avg_price, updated_at FROM broker.positions "
        "WHERE account_id = %s ORDER BY symbol",
        (account,),
    )
    return Json({"account_id": account, "positions": rows})


@authenticated
async def orders(request: Request) -> Response:
    if request.method == "POST":
        return await _place_order(request)
    params = request.query_params
    try:
        limit = min(max(int(params.get("limit", "50")), 1), 1000)
    except ValueError:
        return error(400, "limit must be an integer")
    rows = await request.app.state.db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM broker.orders "
        "WHERE (%(account)s::text IS NULL OR account_id = %(account)s) "
        "AND (%(status)s::text IS NULL OR status = %(status)s) "
        "ORDER BY created_at DESC LIMIT %(limit)s",
        {"account": params.get("account"), "status": params.get("status"), "limit": limit},
    )
    return Json({"orders": rows})


@authenticated
async def fills(request: Request) -> Response:
    """Fills since a time (ISO 8601, default: the last day), with their order's account,
    symbol, side and the client's order id: what a reconciliation matches reports against."""
    params = request.query_params
    try:
        limit = min(max(int(params.get("limit", "1000")), 1), 10000)
    except ValueError:
        return error(400, "limit must be an integer")
    rows = await request.app.state.db.fetch(
        "SELECT f.fill_id, f.order_id, o.client_order_id, o.account_id, o.symbol, o.side,"
        " f.qty, f.price, f.executed_at FROM broker.fills f JOIN broker.orders o USING (order_id)"
        " WHERE f.executed_at > coalesce(%(since)s::timestamptz, now() - interval '1 day')"
        " AND (%(account)s::text IS NULL OR o.account_id = %(account)s)"
        " ORDER BY f.executed_at DESC LIMIT %(limit)s",
        {"since": params.get("since"), "account": params.get("account"), "limit": limit},
    )
    return Json({"fills": rows})


def _order_request(body: dict[str, Any]) -> dict[str, Any] | str:
    """The order to place, or why it is refused."""
    side = str(body.get("side", "")).lower()
    qty = body.get("qty")
    if side not in ("buy", "sell"):
        return "side must be buy or sell"
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        return "qty must be a positive integer"
    if not body.get("account") or not body.get("symbol"):
        return "account and symbol are required"
    suffix = secrets.token_hex(6).upper()
    return {
        "account": str(body["account"]),
        "symbol": str(body["symbol"]).upper(),
        "side": side,
        "qty": qty,
        "signed_qty": qty if side == "buy" else -qty,
        "client_order_id": body.get("client_order_id"),
        "order_id": f"BRK-{suffix}",
        "fill_id": f"FILL-{suffix}",
    }


async def _place_order(request: Request) -> Response:
    order = _order_request(await json_body(request))
    if isinstance(order, str):
        return error(400, order)
    reason = request.app.state.faults.get().get("reject_reason")
    if reason:
        return await _reject(request, order, str(reason))

    async def fill(conn: psycopg.AsyncConnection[Any]) -> Response:
        async with conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT 1 FROM broker.accounts WHERE account_id = %(account)s FOR UPDATE", order
            )
            if await cur.fetchone() is None:
                return error(404, f"unknown account {order['account']}")
            await cur.execute(
                "SELECT last FROM market_data_ticks WHERE symbol = %(symbol)s "
                "ORDER BY ts DESC LIMIT 1",
                order,
            )
            tick = await cur.fetchone()
            if tick is None:
                return error(422, f"no market for {order['symbol']}")
            order["price"] = tick["last"]
            await cur.execute(
                "INSERT INTO broker.orders (order_id, account_id, client_order_id, symbol, side,"
                " qty, status) VALUES (%(order_id)s, %(account)s, %(client_order_id)s,"
                " %(symbol)s, %(side)s, %(qty)s, 'filled')",
                order,
            )
            await cur.execute(
                "INSERT INTO broker.fills (fill_id, order_id, qty, price)"
                " VALUES (%(fill_id)s, %(order_id)s, %(qty)s, %(price)s)",
                order,
            )
            await cur.execute(BROKER_BOOKS, order)
            await cur.execute(
                "UPDATE broker.accounts SET cash = cash - %(signed_qty)s * %(price)s"
                " WHERE account_id = %(account)s",
                order,
            )
        placed = {k: order[k] for k in ("order_id", "account", "symbol", "side", "qty")}
        return Json(
            {**placed, "status": "filled", "fill_id": order["fill_id"], "price": order["price"]},
            status_code=201,
        )

    return await request.app.state.db.run(fill)


async def _reject(request: Request, order: dict[str, Any], reason: str) -> Response:
    """The broker refuses the order: it keeps it, rejected, with the reason it gives."""
    await request.app.state.db.execute(
        "INSERT INTO broker.orders (order_id, account_id, client_order_id, symbol, side, qty,"
        " status, reject_reason) SELECT %(order_id)s, %(account)s, %(client_order_id)s,"
        " %(symbol)s, %(side)s, %(qty)s, 'rejected', %(reason)s"
        " WHERE EXISTS (SELECT 1 FROM broker.accounts WHERE account_id = %(account)s)",
        {**order, "reason": reason},
    )
    placed = {k: order[k] for k in ("order_id", "account", "symbol", "side", "qty")}
    return Json({**placed, "status": "rejected", "reason": reason}, status_code=422)


def build_app(config: LabConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(config.postgres_dsn, application_name="broker")
        try:
            yield
        finally:
            await app.state.db.close()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/status", status),
            Route("/v1/auth/test", auth_test),
            Route("/v1/accounts/{account}/positions", account_positions),
            Route("/v1/orders", orders, methods=["GET", "POST"]),
            Route("/v1/fills", fills),
        ],
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable_handler},
    )
    app.state.faults = Faults(config)
    return app


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "broker")
