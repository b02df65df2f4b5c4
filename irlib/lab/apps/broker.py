"""The external broker's API: status, authentication test, positions, orders and fills.

Keeps its books in the `broker` schema of the lab's PostgreSQL and fills market orders at the
latest tick price. Every /v1 route but /v1/status wants the broker bearer token.
"""

from __future__ import annotations

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
    utc_now,
)
from irlib.lab.config import LabConfig

BROKER_TOKEN_ENV = "IRLIB_BROKER_TOKEN"
ORDER_COLUMNS = "order_id, account_id, client_order_id, symbol, side, qty, limit_price, status, \
created_at, updated_at"

Endpoint = Callable[[Request], Awaitable[Response]]

# Adding to a position averages its price; reducing keeps it; flipping starts afresh.
UPSERT_POSITION = """
    INSERT INTO broker.positions AS p (account_id, symbol, qty, avg_price)
    VALUES (%(account)s, %(symbol)s, %(signed_qty)s, %(price)s)
    ON CONFLICT (account_id, symbol) DO UPDATE SET
        avg_price = CASE
            WHEN p.qty = 0 OR sign(p.qty) = sign(EXCLUDED.qty) THEN
                round((abs(p.qty) * p.avg_price + abs(EXCLUDED.qty) * EXCLUDED.avg_price)
                      / (abs(p.qty) + abs(EXCLUDED.qty)), 4)
            WHEN abs(EXCLUDED.qty) > abs(p.qty) THEN EXCLUDED.avg_price
            ELSE p.avg_price END,
        qty = p.qty + EXCLUDED.qty,
        updated_at = now()
"""


def authenticated(endpoint: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        if not bearer_ok(request, BROKER_TOKEN_ENV):
            return unauthorized()
        return await endpoint(request)

    return guarded


async def health(request: Request) -> Response:
    try:
        await request.app.state.db.fetch_one("SELECT 1")
    except Unavailable as e:
        return Json({"status": "unavailable", "error": str(e)}, status_code=503)
    return Json({"status": "ok", "database": "ok"})


async def status(request: Request) -> Response:
    return Json({"status": "operational", "api_version": "v1", "server_time": iso(utc_now())})


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
            await cur.execute(UPSERT_POSITION, order)
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


def build_app(config: LabConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(config.postgres_dsn, application_name="broker")
        try:
            yield
        finally:
            await app.state.db.close()

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/status", status),
            Route("/v1/auth/test", auth_test),
            Route("/v1/accounts/{account}/positions", account_positions),
            Route("/v1/orders", orders, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable_handler},
    )


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "broker")
