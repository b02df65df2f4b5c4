"""What the lab's apps share: a tiny PostgreSQL connection pool, a Redis client with
short timeouts, JSON responses, bearer-token checks, logging and the uvicorn runner.

Every dependency may be down at any moment: connections are opened lazily and dropped when
broken, so an app starts without its database and recovers when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import psycopg
import redis.asyncio as aioredis
import uvicorn
from psycopg.rows import dict_row
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from irlib.io import utcnow
from irlib.lab.config import LabConfig

T = TypeVar("T")
log = logging.getLogger("irlib.lab.apps")

CHECK_TIMEOUT = 1.0  # seconds a health check may take before it counts as failed
STATEMENT_TIMEOUT_MS = 15_000
POOL_WAIT_S = 8.0  # how long a request waits for a free pooled connection


def setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def iso(ts: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z, as Kubernetes and our logs write time."""
    return ts.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def age_s(ts: dt.datetime) -> float:
    return round((utcnow() - ts).total_seconds(), 3)


def short_reason(exc: BaseException) -> str:
    """One line a log reader understands: 'connection refused', 'timed out', ..."""
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timed out"
    causes: list[BaseException | None] = [exc, exc.__cause__, exc.__context__]
    if "refused" in text.lower() or any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if not text:
        return type(exc).__name__
    # psycopg nests causes: 'connection failed: connection to server at ... failed: <why>'
    return text.splitlines()[0].rsplit(" failed: ", 1)[-1]


class Unavailable(Exception):
    """A dependency could not be reached: the request answers 503 and names it."""

    def __init__(self, dependency: str, reason: str) -> None:
        super().__init__(f"{dependency} unreachable: {reason}")
        self.dependency = dependency
        self.reason = reason


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(value: Any) -> str:
    """JSON that also carries Decimal and datetime values straight from PostgreSQL."""
    return json.dumps(value, default=_jsonable, separators=(",", ":"))


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return to_json(content).encode()


def error(status: int, message: str, **extra: Any) -> Json:
    return Json({"error": message, **extra}, status_code=status)


def log_request_error(request: Request, message: str) -> None:
    """An ERROR line in the log of the pod that served the request (api) and on stderr."""
    pod_log = getattr(request.state, "pod_log", None)
    if pod_log is not None:
        pod_log("ERROR", message)
    log.warning("%s %s: %s", request.method, request.url.path, message)


async def unavailable_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unavailable)
    log_request_error(request, str(exc))
    return error(503, f"{exc.dependency} unavailable", reason=exc.reason)


def bearer_ok(request: Request, token_env: str) -> bool:
    """Whether the request carries the token in `token_env`; no token configured: nobody."""
    expected = os.environ.get(token_env, "")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def unauthorized() -> Response:
    return Json({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


class Database:
    """A few reusable autocommit connections to PostgreSQL, made on demand.

    A broken connection is closed, never reused; a query that fails because a pooled
    connection died (the server restarted) is retried once on a fresh one.
    """

    def __init__(
        self, dsn: str, application_name: str, keep: int = 4, max_size: int | None = None
    ) -> None:
        self.dsn = dsn
        self.application_name = application_name
        self.keep = keep
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self.in_use = 0
        # A bounded pool (max_size) makes a request wait for a free connection, up to
        # POOL_WAIT_S, as a real app's pool does; None: unbounded.
        self.max_size = max_size
        self._slots = asyncio.Semaphore(max_size) if max_size else None
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the pool's max_size slots; Unavailable after POOL_WAIT_S without one."""
        if self._slots is None:
            yield
            return
        self.waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), POOL_WAIT_S)
        except TimeoutError as e:
            raise Unavailable("database", f"pool exhausted ({self.max_size} in use)") from e
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=2,  # libpq's minimum; a stopped server refuses at once anyway
            application_name=self.application_name,
            options=f"-c TimeZone=UTC -c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )

    async def run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`await work(conn)`; raises Unavailable when the database cannot be reached."""
        async with self.slot():
            return await self._run(work)

    async def _run(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        pooled = bool(self._idle)
        try:
            conn = self._idle.pop() if pooled else await self._connect()
        except psycopg.OperationalError as e:
            raise Unavailable("database", short_reason(e)) from e
        self.in_use += 1
        try:
            result = await work(conn)
        except psycopg.OperationalError as e:
            died = conn.broken  # before close(), which would make it merely closed
            await conn.close()
            if pooled and died:
                await self.close()  # its siblings died with the same server
                return await self._run(work)
            raise Unavailable("database", short_reason(e)) from e
        except BaseException:
            await conn.close()  # cancelled or failed mid-query: its state is unknown
            raise
        finally:
            self.in_use -= 1
        if len(self._idle) < self.keep and not conn.closed:
            self._idle.append(conn)
        else:
            await conn.close()
        return result

    async def fetch(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        async def work(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall()

        return await self.run(work)

    async def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement that returns no rows; the number of rows it touched."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> int:
            return (await conn.execute(sql, params)).rowcount

        return await self.run(work)

    async def fetch_one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    def stats(self) -> dict[str, int | None]:
        return {
            "idle": len(self._idle),
            "in_use": self.in_use,
            "keep": self.keep,
            "max_size": self.max_size,
            "waiting": self.waiting,
        }

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


async def stop_task(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def open_redis(config: LabConfig) -> aioredis.Redis:
    # one quick retry: the first command after a Redis restart meets a dead pooled socket
    return aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
        decode_responses=True,
    )


def serve(app: Starlette, config: LabConfig, name: str) -> None:
    """Run `app` on its lab port until SIGTERM or SIGINT, then exit 0."""
    # uvicorn shuts down gracefully on either signal and then raises it again so that the
    # process dies of it; the shutdown is already done, so that second delivery is ignored.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.ports[name],
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
    ).run()
