"""The external market-data provider: `/status` and quotes, and the feed itself.

A background task (the platform's data-ingestion, logging into its pods' logs) writes a fresh
tick per symbol every second into `market_data_ticks` of the lab's PostgreSQL (a random walk
from the newest stored price), an option surface per symbol every minute into `option_quotes`
(irlib.lab.surfaces), and trims old rows; while the database is away it waits and resumes when
it returns. The calibration faults stop it (`ingestion_stopped`) or drop a symbol's surface.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irlib.lab import surfaces
from irlib.lab.apps._common import (
    Database,
    Json,
    Unavailable,
    age_s,
    error,
    serve,
    short_reason,
    stop_task,
    unavailable_handler,
)
from irlib.lab.apps.deployment_logs import DeploymentLogs
from irlib.lab.config import Control, LabConfig, read_control
from irlib.lab.seed import SYMBOLS

log = logging.getLogger("irlib.lab.apps.market_data")

TICK_INTERVAL = 1.0
TRIM_INTERVAL = 60.0
KEEP = "3 hours"
STALE_AFTER_S = 10.0  # /status reports the feed stale beyond this
STEP_VOL = 0.0003  # per-tick log-price volatility
SURFACE_EVERY_S = 60.0  # a new option surface per symbol this often
GAP_LOG_EVERY_S = 5.0  # while ingestion is stopped, an error line this often
INGESTION = "data-ingestion"

INSERT_TICKS = """
    INSERT INTO market_data_ticks (symbol, ts, bid, ask, last, volume)
    SELECT symbol, now(), round(last - last * 0.00005, 2), round(last + last * 0.00005, 2),
           round(last, 2), volume
    FROM unnest(%s::text[], %s::numeric[], %s::bigint[]) AS t(symbol, last, volume)
"""
LATEST_PER_SYMBOL = """
    SELECT symbol, max(ts) AS ts FROM market_data_ticks
    WHERE ts > now() - interval '1 hour' GROUP BY symbol
"""


class Feed:
    """The random walk of every symbol's price, continued from what the database holds."""

    def __init__(self, db: Database, config: LabConfig | None = None) -> None:
        self.db = db
        self.config = config
        self.logs = DeploymentLogs(config.pods_dir, INGESTION) if config else None
        self.prices: dict[str, float] = {}
        self.surfaced: dict[str, float] = {}  # symbol -> monotonic time of its last surface
        self.rng = np.random.default_rng()
        self.last_tick_at = dt.datetime.now(dt.UTC)
        self.gap_logged = 0.0
        self.missing_logged = 0.0

    def _log(self, level: str, message: str) -> None:
        if self.logs is not None:
            self.logs.write(level, message)

    async def _load_prices(self) -> None:
        rows = await self.db.fetch(
            "SELECT DISTINCT ON (symbol) symbol, last FROM market_data_ticks "
            "WHERE symbol = ANY(%s) ORDER BY symbol, ts DESC",
            (list(SYMBOLS),),
        )
        stored = {r["symbol"]: float(r["last"]) for r in rows}
        self.prices = {s: stored.get(s, info.price) for s, info in SYMBOLS.items()}

    async def tick(self) -> None:
        if not self.prices:
            await self._load_prices()
        for symbol, price in self.prices.items():
            self.prices[symbol] = price * math.exp(random.gauss(0.0, STEP_VOL))
        symbols = list(self.prices)
        lasts = [round(self.prices[s], 4) for s in symbols]
        volumes = [random.randint(100, 10_000) for _ in symbols]
        await self.db.execute(INSERT_TICKS, (symbols, lasts, volumes))
        self.last_tick_at = dt.datetime.now(dt.UTC)

    async def surfaces(self, missing: list[str]) -> None:
        """A fresh option surface of every symbol whose last one is a minute old."""
        now = time.monotonic()
        for symbol in missing:  # due the moment its option chain comes back
            self.surfaced.pop(symbol, None)
        due = [s for s in self.prices if now - self.surfaced.get(s, -1e9) >= SURFACE_EVERY_S]
        skipped = [s for s in due if s in missing]
        due = [s for s in due if s not in missing]
        if skipped and now - self.missing_logged >= SURFACE_EVERY_S:
            self.missing_logged = now
            for symbol in skipped:
                self._log(
                    "WARN",
                    f"option chain for {symbol}: provider returned 0 contracts; "
                    "volatility surface not updated",
                )
        if not due:
            return
        ts = dt.datetime.now(dt.UTC)
        rows = await asyncio.to_thread(
            lambda: [r for s in due for r in surfaces.snapshot(s, self.prices[s], ts, self.rng)]
        )
        await self.db.execute(surfaces.INSERT_QUOTES, surfaces.columns(rows))
        for symbol in due:
            self.surfaced[symbol] = now
        self._log("INFO", f"option surfaces updated: {len(due)} symbols, {len(rows)} quotes")

    def stopped(self, control: Control) -> bool:
        """Under the market-data-gap fault the session to the provider is lost: no ticks."""
        if not control.get("ingestion_stopped"):
            return False
        self.surfaced.clear()  # on reconnect, a fresh surface of every symbol at once
        now = time.monotonic()
        if now - self.gap_logged >= GAP_LOG_EVERY_S:
            self.gap_logged = now
            self._log(
                "ERROR",
                "market-data session lost: upstream closed the connection (heartbeat timeout); "
                f"no ticks since {self.last_tick_at:%H:%M:%S} UTC; reconnecting in 5s",
            )
        return True

    async def trim(self) -> None:
        await self.db.execute(f"DELETE FROM market_data_ticks WHERE ts < now() - interval '{KEEP}'")
        await self.db.execute(f"DELETE FROM option_quotes WHERE ts < now() - interval '{KEEP}'")

    async def run(self) -> None:
        last_trim = 0.0
        down = False
        while True:
            try:
                control = read_control(self.config) if self.config else {}
                if self.stopped(control):
                    await asyncio.sleep(TICK_INTERVAL)
                    continue
                await self.tick()
                await self.surfaces(list(control.get("missing_surfaces") or []))
                if time.monotonic() - last_trim > TRIM_INTERVAL:
                    await self.trim()
                    last_trim = time.monotonic()
                if down:
                    log.warning("database back: ticks flowing again")
                down = False
            except Exception as e:  # the feed outlives any outage
                if not down:  # once per outage, not once a second
                    log.warning("cannot write ticks: %s", short_reason(e))
                    self._log("ERROR", f"cannot write ticks: {short_reason(e)}")
                down = True
            await asyncio.sleep(TICK_INTERVAL)


async def status(request: Request) -> Response:
    try:
        rows = await request.app.state.db.fetch(LATEST_PER_SYMBOL)
    except Unavailable as e:
        return Json({"status": "unavailable", "error": str(e)}, status_code=503)
    latest = {r["symbol"]: r["ts"] for r in rows}
    missing = sorted(set(SYMBOLS) - set(latest))
    age = max((age_s(ts) for ts in latest.values()), default=None)
    stale = bool(missing) or age is None or age > STALE_AFTER_S
    body: dict[str, Any] = {
        "status": "stale" if stale else "ok",
        "symbols": sorted(latest),
        "latest_tick_age_s": age,
    }
    if missing:
        body["missing"] = missing
    return Json(body, status_code=503 if stale else 200)


async def quote(request: Request) -> Response:
    symbol = request.path_params["symbol"].upper()
    row = await request.app.state.db.fetch_one(
        "SELECT symbol, ts, bid, ask, last, volume FROM market_data_ticks "
        "WHERE symbol = %s ORDER BY ts DESC LIMIT 1",
        (symbol,),
    )
    if row is None:
        return error(404, f"unknown symbol {symbol}")
    return Json({**row, "age_s": age_s(row["ts"])})


def build_app(config: LabConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.db = Database(config.postgres_dsn, application_name="market-data")
        # the feed has its own connection: a burst of requests never delays a tick
        feed = Feed(
            Database(config.postgres_dsn, application_name="data-ingestion", keep=1), config
        )
        task = asyncio.create_task(feed.run())
        try:
            yield
        finally:
            await stop_task(task)
            await feed.db.close()
            await app.state.db.close()

    return Starlette(
        routes=[Route("/status", status), Route("/v1/quotes/{symbol}", quote)],
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable_handler},
    )


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "market_data")
