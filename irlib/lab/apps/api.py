"""The trading API (api-service): health, market data, positions, orders, strategies,
the emergency pause and the Heston calibration endpoints the runbook calls.

Reads and writes the lab's PostgreSQL, caches quotes in Redis, asks the broker and the
market-data provider for their health, and sits behind the ingress (ingress.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from irlib.lab.apps import calibration
from irlib.lab.apps._common import (
    CHECK_TIMEOUT,
    Database,
    Json,
    Unavailable,
    age_s,
    bearer_ok,
    error,
    log_request_error,
    open_redis,
    serve,
    short_reason,
    stop_task,
    to_json,
    unauthorized,
    unavailable_handler,
)
from irlib.lab.apps.fault_switches import FaultSwitches
from irlib.lab.apps.ingress import Ingress, PodLogs, RequestMetrics, Upstream
from irlib.lab.config import LabConfig
from irlib.lab.kube.access import ssl_context

ADMIN_TOKEN_ENV = "IRLIB_ADMIN_TOKEN"
QUOTE_CACHE_MS = 1500
ORDER_STATES = ("new", "submitted", "filled", "rejected", "cancelled")
POOL_SIZE = 20  # what the pods' start log says ("pool size 20")
ORDER_COLUMNS = "id, strategy_id, account, symbol, side, qty, price, state, broker_order_id, \
created_at, updated_at"


async def livez(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _timed(name: str, check: Awaitable[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    start = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check, CHECK_TIMEOUT)
    except Exception as e:  # every failure is an answer here, not a crash
        detail = {"ok": False, "error": e.reason if isinstance(e, Unavailable) else short_reason(e)}
    else:
        detail = {"ok": True, **detail}
    detail["latency_ms"] = round((time.perf_counter() - start) * 1000, 1)
    return name, detail


async def _check_database(db: Database) -> dict[str, Any]:
    row = await db.fetch_one("SELECT count(*) AS connections FROM pg_stat_activity")
    return {"connections": row["connections"] if row else None, "pool": db.stats()}


async def _check_redis(redis: aioredis.Redis) -> dict[str, Any]:
    await redis.ping()
    return {}


async def _check_http(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    resp = await client.get(url, timeout=CHECK_TIMEOUT)
    body = resp.json()
    status = body.get("status") if isinstance(body, dict) else None
    if resp.status_code != 200:
        raise RuntimeError(f"HTTP {resp.status_code} ({status or 'no status'})")
    return {"status": status}


async def health(request: Request) -> Response:
    """Deep health: every dependency answered within a second, or 503 naming the failures."""
    state = request.app.state
    config: LabConfig = state.config
    results = dict(
        await asyncio.gather(
            _timed("database", _check_database(state.db)),
            _timed("redis", _check_redis(state.redis)),
            _timed("broker", _check_http(state.http, config.url("broker") + "/health")),
            _timed("market_data", _check_http(state.http, config.url("market_data") + "/status")),
        )
    )
    failed = [name for name, detail in results.items() if not detail["ok"]]
    for name in failed:
        reason = results[name]["error"]
        # it answered but reported trouble (HTTP 503), or it did not answer at all
        verb = "unhealthy" if reason.startswith("HTTP ") else "unreachable"
        log_request_error(request, f"{name} {verb}: {reason}")
    if failed:
        return Json({"status": "unavailable", "checks": results}, status_code=503)
    return Json({"status": "ok", "checks": results})


async def pool(request: Request) -> Response:
    """The connection pool's state (the high-latency runbook's "api-service pool status");
    answers without touching the database, so it works when the pool is exhausted."""
    return Json({"pool": request.app.state.db.stats()})


async def metrics(request: Request) -> Response:
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def latest_quote(request: Request) -> Response:
    """The newest tick of a symbol, from Redis when a request fetched it a moment ago."""
    state = request.app.state
    symbol = request.path_params["symbol"].upper()
    key = f"md:latest:{symbol}"
    try:
        cached = await state.redis.get(key)
    except aioredis.RedisError as e:  # a cache outage slows us down, it does not stop us
        log_request_error(request, f"redis unreachable: {short_reason(e)}")
        cached = None
    source = "cache"
    if cached:
        tick = json.loads(cached)
    else:
        source = "database"
        row = await state.db.fetch_one(
            "SELECT symbol, ts, bid, ask, last, volume FROM market_data_ticks "
            "WHERE symbol = %s ORDER BY ts DESC LIMIT 1",
            (symbol,),
        )
        if row is None:
            return error(404, f"no market data for {symbol}")
        tick = json.loads(to_json(row))
        with contextlib.suppress(aioredis.RedisError):  # logged above if Redis is down
            await state.redis.set(key, to_json(tick), px=QUOTE_CACHE_MS)
    age = age_s(dt.datetime.fromisoformat(tick["ts"]))
    return Json({**tick, "age_s": age, "source": source})


async def positions(request: Request) -> Response:
    account = request.query_params.get("account")
    rows = await request.app.state.db.fetch(
        "SELECT account, symbol, qty, avg_price, updated_at FROM positions "
        "WHERE %(account)s::text IS NULL OR account = %(account)s ORDER BY account, symbol",
        {"account": account},
    )
    return Json({"positions": rows})


async def orders(request: Request) -> Response:
    """Newest orders; with `symbol`, that symbol's orders of the last hour (an index scan)."""
    params = request.query_params
    state = params.get("state") or None
    if state is not None and state not in ORDER_STATES:
        return error(400, f"state must be one of {', '.join(ORDER_STATES)}")
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        return error(400, "limit must be an integer")
    if not 1 <= limit <= 1000:
        return error(400, "limit must be between 1 and 1000")
    symbol = (params.get("symbol") or "").upper()
    # conditions are spelled out, not `%s IS NULL OR ...`: a generic plan of that form
    # (psycopg prepares repeated queries) could use no index at all
    where, order = ["true"], "id DESC"
    if symbol:
        where += ["symbol = %(symbol)s", "created_at > now() - interval '1 hour'"]
        order = "created_at DESC"
    if state:
        where.append("state = %(state)s")
    sql = (
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE {' AND '.join(where)} "
        f"ORDER BY {order} LIMIT %(limit)s"
    )
    args = {"symbol": symbol, "state": state, "limit": limit}
    return Json({"orders": await request.app.state.db.fetch(sql, args)})


async def strategies(request: Request) -> Response:
    rows = await request.app.state.db.fetch(
        "SELECT id, name, paused, updated_at FROM strategies ORDER BY id"
    )
    return Json({"strategies": rows})


async def _set_paused(request: Request, paused: bool) -> Response:
    if not bearer_ok(request, ADMIN_TOKEN_ENV):
        return unauthorized()
    changed = await request.app.state.db.fetch(
        "UPDATE strategies SET paused = %s, updated_at = now() WHERE paused <> %s RETURNING name",
        (paused, paused),
    )
    names = sorted(r["name"] for r in changed)
    verb = "paused" if paused else "resumed"
    pod_log = getattr(request.state, "pod_log", None)
    if pod_log is not None:
        pod_log("WARN", f"admin {verb} {len(names)} strategies: {', '.join(names) or '-'}")
    return Json({verb: names, "count": len(names)})


async def pause_all(request: Request) -> Response:
    return await _set_paused(request, True)


async def resume_all(request: Request) -> Response:
    return await _set_paused(request, False)


def build_app(config: LabConfig) -> Starlette:
    upstream = Upstream(config)
    request_metrics = RequestMetrics()
    switches = FaultSwitches(config, Database(config.postgres_dsn, "api-service"))
    routes = [
        Route("/livez", livez),
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/v1/market-data/{symbol}/latest", latest_quote),
        Route("/v1/positions", positions),
        Route("/v1/orders", orders),
        Route("/v1/strategies", strategies),
        Route("/v1/admin/pause-all", pause_all, methods=["POST"]),
        Route("/v1/admin/resume-all", resume_all, methods=["POST"]),
        Route("/v1/admin/pool", pool),
        *calibration.routes(),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(
            config.postgres_dsn, application_name="api-service", max_size=POOL_SIZE
        )
        app.state.redis = open_redis(config)
        switches.db = app.state.db
        # one client for the upstreams: the calibration-service (HTTP) and the Kubernetes API
        # (HTTPS with the lab's CA, which this context trusts)
        async with httpx.AsyncClient(verify=ssl_context(config)) as client:
            app.state.http = client
            watcher = asyncio.create_task(upstream.watch(client))
            faults = asyncio.create_task(switches.watch())
            try:
                yield
            finally:
                await stop_task(faults)
                await stop_task(watcher)
                await app.state.db.close()
                await app.state.redis.aclose()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                Ingress,
                upstream=upstream,
                metrics=request_metrics,
                pod_logs=PodLogs(config.pods_dir),
                routes=routes,
                delay=switches.request_delay_s,
            )
        ],
        exception_handlers={Unavailable: unavailable_handler},
    )
    app.state.config = config
    app.state.metrics = request_metrics
    return app


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "api")
