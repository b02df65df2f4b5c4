"""The execution-service: sends the orders of running strategies to the broker and books what
the broker answers (execution reports, order states, positions) in the platform's tables.

It also plays the strategies: a small steady flow of market orders from strategies that are
not paused. It works only while its Deployment has a ready pod (scaled to 0, it idles) and
writes its log into those pods' log files, so `kubectl logs -l app=execution-service` shows
its broker traffic and errors. `/livez` is what the pods' readiness probe asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from irlib.lab.apps._common import (
    Database,
    Unavailable,
    serve,
    short_reason,
    stop_task,
)
from irlib.lab.apps.ingress import PodLogs
from irlib.lab.apps.platform_metrics import ExecutionMetrics, serve_metrics
from irlib.lab.apps.positions import PLATFORM_BOOKS
from irlib.lab.config import BROKER_TOKEN_ENV, LabConfig
from irlib.lab.kube.access import async_admin_client
from irlib.lab.seed import ACCOUNTS, SYMBOLS

log = logging.getLogger("irlib.lab.apps.execution")

APP = "execution-service"
TICK_S = 1.0  # one pass: pods, heartbeat when due, a new order when due, route what is new
NEW_ORDER_EVERY_S = (2.0, 4.0)  # the strategies' flow: light, so the lab stays cheap
HEARTBEAT_EVERY_S = 5.0
HEARTBEAT_OK_LOG_EVERY_S = 60.0
SLOW_BROKER_S = 1.0
BROKER_TIMEOUT_S = 10.0
AUTH_BACKOFF_S = 5.0
BATCH = 10

NEW_ORDERS = """
    SELECT o.id, o.account, o.symbol, o.side, o.qty FROM orders o
    JOIN strategies s ON s.id = o.strategy_id
    WHERE o.state = 'new' AND NOT s.paused ORDER BY o.id LIMIT %s
"""


def ready_pods(pod_list: dict[str, Any]) -> list[str]:
    """Names of the running, ready pods in a PodList."""
    out = []
    for pod in pod_list.get("items") or []:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            out.append(pod["metadata"]["name"])
    return sorted(out)


class Engine:
    """The service's loop; `pods` is None until the Kubernetes API first answers."""

    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.db = Database(config.postgres_dsn, application_name=APP, keep=2)
        self.logs = PodLogs(config.pods_dir)
        self.metrics = ExecutionMetrics()
        self.pods: list[str] | None = None
        self._turn = itertools.count()
        self._pods_url = (
            f"{config.url('kubernetes')}/api/v1/namespaces/{config.namespace}/pods"
            f"?labelSelector=app%3D{APP}"
        )
        now = time.monotonic()
        self.next_heartbeat = now
        self.next_order = now + random.uniform(*NEW_ORDER_EVERY_S)
        self.last_ok_logged = 0.0
        self.paused_until = 0.0

    # -- where it runs and logs ------------------------------------------------------------

    def log(self, level: str, message: str) -> None:
        if self.pods:
            self.logs.write(self.pods[next(self._turn) % len(self.pods)], level, message)

    async def refresh_pods(self, kube: httpx.AsyncClient) -> None:
        try:
            resp = await kube.get(self._pods_url, timeout=1.0)
            if resp.status_code == 200:
                self.pods = ready_pods(resp.json())
        except (httpx.HTTPError, ValueError):
            pass  # keep the last known pods, as a pod keeps running when the API is away

    # -- the broker ------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {os.environ.get(BROKER_TOKEN_ENV, '')}"}

    async def heartbeat(self, broker: httpx.AsyncClient) -> None:
        """The broker session's keepalive: an auth test every few seconds."""
        t0 = time.monotonic()
        try:
            resp = await broker.get("/v1/auth/test", headers=self._headers())
        except httpx.HTTPError as e:
            self.log("ERROR", f"broker heartbeat failed: {short_reason(e)}")
            return
        took = time.monotonic() - t0
        if resp.status_code in (401, 403):
            self.log(
                "ERROR",
                f"broker authentication failed: HTTP {resp.status_code} on session heartbeat "
                "(credentials refused)",
            )
        elif resp.status_code != 200:
            self.log("ERROR", f"broker heartbeat failed: HTTP {resp.status_code}")
        elif took > SLOW_BROKER_S:
            self.log("WARN", f"broker heartbeat slow: answered in {took:.2f} s")
        elif time.monotonic() - self.last_ok_logged > HEARTBEAT_OK_LOG_EVERY_S:
            self.last_ok_logged = time.monotonic()
            self.log("INFO", f"broker heartbeat ok ({took * 1000:.0f} ms)")

    async def new_order(self) -> None:
        """One market order from a running strategy (none when every strategy is paused)."""
        symbol = random.choice(list(SYMBOLS))
        await self.db.execute(
            "INSERT INTO orders (strategy_id, account, symbol, side, qty, state)"
            " SELECT id, %s, %s, %s, %s, 'new' FROM strategies WHERE NOT paused"
            " ORDER BY random() LIMIT 1",
            (
                random.choice(ACCOUNTS),
                symbol,
                random.choice(("buy", "sell")),
                random.randint(1, 10) * 10,
            ),
        )

    async def route(self, broker: httpx.AsyncClient) -> None:
        for order in await self.db.fetch(NEW_ORDERS, (BATCH,)):
            if not await self.send(broker, order):
                return

    async def send(self, broker: httpx.AsyncClient, order: dict[str, Any]) -> bool:
        """Send one order and book the answer; False when the broker cannot take orders now."""
        ref = f"ORD-{order['id']}"
        what = f"{order['side'].upper()} {order['qty']} {order['symbol']} for {order['account']}"
        body = {
            **{k: order[k] for k in ("account", "symbol", "side", "qty")},
            "client_order_id": ref,
        }
        t0 = time.monotonic()
        try:
            resp = await broker.post("/v1/orders", json=body, headers=self._headers())
        except httpx.TimeoutException:
            # it may have been filled: only a reconciliation can tell now
            await self._set_state(order["id"], "submitted")
            self.log("ERROR", f"broker timeout sending {ref} ({what}): state unknown")
            return False
        except httpx.HTTPError as e:
            self.log("ERROR", f"broker unreachable sending {ref}: {short_reason(e)}")
            return False
        took = time.monotonic() - t0
        answer = _json(resp)
        if resp.status_code == 201:
            await self._book_fill(order, answer)
            self.metrics.filled_now()
            slow = f" (slow broker: {took:.2f} s)" if took > SLOW_BROKER_S else ""
            level = "WARN" if slow else "INFO"
            self.log(
                level,
                f"{ref} filled by broker {answer.get('order_id')}: {what} "
                f"@ {answer.get('price')}{slow}",
            )
            return True
        if resp.status_code in (401, 403):
            self.log(
                "ERROR",
                f"broker authentication failed sending {ref}: HTTP {resp.status_code} Unauthorized",
            )
            self.paused_until = time.monotonic() + AUTH_BACKOFF_S
            return False
        if resp.status_code >= 500:
            self.log("ERROR", f"broker error sending {ref}: HTTP {resp.status_code}")
            return False
        reason = str(answer.get("reason") or answer.get("error") or f"HTTP {resp.status_code}")
        await self._set_state(order["id"], "rejected", answer.get("order_id"))
        self.metrics.rejected_now(reason)
        self.log("WARN", f"broker rejected {ref} ({what}): {reason}")
        return True

    async def _set_state(self, order_id: int, state: str, broker_id: Any = None) -> None:
        await self.db.execute(
            "UPDATE orders SET state = %s, broker_order_id = coalesce(%s, broker_order_id),"
            " updated_at = now() WHERE id = %s",
            (state, broker_id, order_id),
        )

    async def _book_fill(self, order: dict[str, Any], answer: dict[str, Any]) -> None:
        row = {
            **order,
            "broker_order_id": answer["order_id"],
            "fill_id": answer["fill_id"],
            "price": answer["price"],
            "signed_qty": order["qty"] if order["side"] == "buy" else -order["qty"],
        }

        async def book(conn: psycopg.AsyncConnection[Any]) -> None:
            async with conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "UPDATE orders SET state = 'filled', broker_order_id = %(broker_order_id)s,"
                    " price = %(price)s, updated_at = now() WHERE id = %(id)s",
                    row,
                )
                await cur.execute(
                    "INSERT INTO execution_reports (order_id, broker_fill_id, qty, price,"
                    " executed_at) VALUES (%(id)s, %(fill_id)s, %(qty)s, %(price)s, now())",
                    row,
                )
                await cur.execute(PLATFORM_BOOKS, row)

        await self.db.run(book)

    # -- the loop ----------------------------------------------------------------------------

    async def tick(self, kube: httpx.AsyncClient, broker: httpx.AsyncClient) -> None:
        await self.refresh_pods(kube)
        if not self.pods:
            return  # no ready pod (scaled to 0, or not yet known): the service is not running
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_EVERY_S
            await self.heartbeat(broker)
        if now >= self.next_order:
            self.next_order = now + random.uniform(*NEW_ORDER_EVERY_S)
            await self.new_order()
        if now >= self.paused_until:
            await self.route(broker)

    async def run(self) -> None:
        async with (
            async_admin_client(self.config) as kube,
            httpx.AsyncClient(
                base_url=self.config.url("broker"), timeout=BROKER_TIMEOUT_S
            ) as broker,
        ):
            while True:
                try:
                    await self.tick(kube, broker)
                except Unavailable as e:
                    self.log("ERROR", f"database unavailable: {e.reason}")
                except Exception as e:  # a bad pass is logged; the service keeps running
                    log.warning("execution pass failed: %s", e)
                    self.log("ERROR", f"execution pass failed: {short_reason(e)}")
                await asyncio.sleep(TICK_S)


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def livez(request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(config: LabConfig) -> Starlette:
    engine = Engine(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.run())
        try:
            yield
        finally:
            await stop_task(task)
            with contextlib.suppress(Exception):
                await engine.db.close()

    app = Starlette(
        routes=[Route("/livez", livez), Route("/metrics", serve_metrics)], lifespan=lifespan
    )
    app.state.engine = engine
    app.state.metrics = engine.metrics
    app.state.refresh_metrics = lambda: engine.metrics.refresh(engine.db)
    return app


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "execution")
