"""The calibration-service: fits each symbol's Heston model to its newest option surface, stores
every attempt, serves the last converged parameters (when an attempt fails, the previous ones
stay in use and the answer says so), the optimiser config, a test fit that stores nothing and
the surface for plots. The API's ingress forwards `/v1/calibration/*` here; fits run one at a
time in a worker thread; it logs into the calibration-service pods' logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from irlib.lab import heston
from irlib.lab.apps._common import (
    Database,
    Json,
    Unavailable,
    age_s,
    bearer_ok,
    error,
    iso,
    json_body,
    serve,
    short_reason,
    stop_task,
    unauthorized,
    unavailable_handler,
)
from irlib.lab.apps.deployment_logs import DeploymentLogs
from irlib.lab.apps.platform_metrics import CalibrationMetrics, serve_metrics
from irlib.lab.config import LabConfig, read_control
from irlib.lab.surfaces import RATE

log = logging.getLogger("irlib.lab.apps.calibration_service")

DEPLOYMENT = "calibration-service"
ADMIN_TOKEN_ENV = "IRLIB_ADMIN_TOKEN"
QUOTE_WINDOW_S = 600  # a fit uses the newest surface quoted within this window
MARKET_DATA_MAX_AGE_S = 60.0  # a fit on older ticks would be a fit to yesterday
FRESH_ENOUGH_S = 3600.0  # without `force`, a calibration this recent is kept
SCHEDULE_EVERY_S = 4 * 3600.0  # the scheduler recalibrates a symbol this long after its last try
SCHEDULER_TICK_S = 30.0
OOM_TICK_S = 0.25
BATCH_MARKER = "batch_size="

CALIBRATION_COLUMNS = """id, symbol, model, params, rmse, iterations, converged, calibrated_at,
    data_window_start, data_window_end, n_quotes, duration_s, message"""
LATEST_SQL = f"""SELECT {CALIBRATION_COLUMNS} FROM calibrations WHERE symbol = %s
    ORDER BY calibrated_at DESC LIMIT 1"""
LATEST_CONVERGED_SQL = f"""SELECT {CALIBRATION_COLUMNS} FROM calibrations
    WHERE symbol = %s AND converged ORDER BY calibrated_at DESC LIMIT 1"""
INSERT_SQL = f"""INSERT INTO calibrations (symbol, params, rmse, iterations, converged,
        data_window_start, data_window_end, n_quotes, duration_s, message)
    VALUES (%(symbol)s, %(params)s, %(rmse)s, %(iterations)s, %(converged)s,
        %(window_start)s, %(window_end)s, %(n_quotes)s, %(duration_s)s, %(message)s)
    RETURNING {CALIBRATION_COLUMNS}"""
STATUS_SQL = """
    WITH latest AS (SELECT DISTINCT ON (symbol) * FROM calibrations
                    ORDER BY symbol, calibrated_at DESC),
         ok AS (SELECT DISTINCT ON (symbol) symbol, id, calibrated_at, rmse, params
                FROM calibrations WHERE converged ORDER BY symbol, calibrated_at DESC),
         snap AS (SELECT symbol, max(ts) AS latest_quote_at FROM option_quotes
                  WHERE ts > now() - make_interval(secs => %(window)s) GROUP BY symbol),
         surface AS (SELECT o.symbol, count(*) AS surface_quotes FROM snap
                     JOIN option_quotes o ON o.symbol = snap.symbol AND o.ts = snap.latest_quote_at
                     GROUP BY o.symbol)
    SELECT l.symbol, l.model, l.converged, l.rmse, l.iterations, l.calibrated_at, l.message,
           l.duration_s, ok.calibrated_at AS last_success_at, ok.rmse AS rmse_in_use,
           ok.params AS params_in_use, (ok.id IS DISTINCT FROM l.id) AS fallback,
           coalesce(surface.surface_quotes, 0) AS surface_quotes, snap.latest_quote_at
    FROM latest l LEFT JOIN ok USING (symbol) LEFT JOIN snap USING (symbol)
         LEFT JOIN surface USING (symbol)
    ORDER BY l.symbol
"""
QUOTES_SQL = """
    SELECT ts, expiry, (expiry - (ts AT TIME ZONE 'UTC')::date) AS days, strike, option_type,
           implied_vol, underlying
    FROM option_quotes
    WHERE symbol = %(symbol)s AND ts = (SELECT max(ts) FROM option_quotes
                                        WHERE symbol = %(symbol)s
                                          AND ts > now() - make_interval(secs => %(window)s))
    ORDER BY days, strike
"""
LATEST_TICK_SQL = """SELECT ts FROM market_data_ticks WHERE symbol = %s
    ORDER BY ts DESC LIMIT 1"""


class DataProblem(Exception):
    """The inputs of a fit are missing or stale: no fit is attempted (HTTP `status`; `reason`
    a code for machines: no-market-data, market-data-stale, no-surface)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _with_age(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "age_s": age_s(row["calibrated_at"])}


class Service:
    """What the routes share: the database, the pods' logs, the fit lock, the config."""

    def __init__(self, config: LabConfig) -> None:
        self.lab = config
        self.db = Database(config.postgres_dsn, application_name="calibration-service")
        self.logs = DeploymentLogs(config.pods_dir, DEPLOYMENT)
        self.fit_lock = asyncio.Lock()

    def optimiser_config(self) -> heston.OptimiserConfig:
        """The built-in defaults, unless a deployed override (control.json) replaces some."""
        override = read_control(self.lab).get("calibration_config") or {}
        return heston.OptimiserConfig.of(override) if override else heston.OptimiserConfig()

    # -- inputs ---------------------------------------------------------------------------

    async def quotes(self, symbol: str) -> tuple[list[dict[str, Any]], heston.Surface]:
        """The newest surface of `symbol` within the window, and the market-data check."""
        tick = await self.db.fetch_one(LATEST_TICK_SQL, (symbol,))
        if tick is None:
            raise DataProblem(404, "no-market-data", f"no market data for {symbol}")
        tick_age = age_s(tick["ts"])
        if tick_age > MARKET_DATA_MAX_AGE_S:
            raise DataProblem(
                503,
                "market-data-stale",
                f"market data stale for {symbol}: latest tick {tick_age:.0f} s old "
                f"(limit {MARKET_DATA_MAX_AGE_S:.0f} s); refusing to calibrate",
            )
        rows = await self.db.fetch(QUOTES_SQL, {"symbol": symbol, "window": QUOTE_WINDOW_S})
        if not rows:
            raise DataProblem(
                422,
                "no-surface",
                f"no option quotes for {symbol} in the last {QUOTE_WINDOW_S} s: "
                "volatility surface missing",
            )
        surface = heston.Surface(
            spot=float(rows[0]["underlying"]),
            strikes=np.array([float(r["strike"]) for r in rows]),
            maturities=np.array([r["days"] / 365.0 for r in rows]),
            is_call=np.array([r["option_type"] == "call" for r in rows]),
            rate=RATE,
        )
        return rows, surface

    async def fit(
        self, symbol: str
    ) -> tuple[heston.Fit, list[dict[str, Any]], heston.Surface, heston.OptimiserConfig]:
        rows, surface = await self.quotes(symbol)
        vols = np.array([r["implied_vol"] for r in rows])
        config = self.optimiser_config()
        async with self.fit_lock:  # one fit at a time: they are CPU-bound
            fit = await asyncio.to_thread(heston.calibrate, vols, surface, config)
        return fit, rows, surface, config

    # -- calibrations ------------------------------------------------------------------------

    async def in_use(self, symbol: str) -> dict[str, Any] | None:
        """The parameters served: the last converged fit, and whether that is a fallback."""
        used = await self.db.fetch_one(LATEST_CONVERGED_SQL, (symbol,))
        if used is None:
            return None
        latest = await self.db.fetch_one(LATEST_SQL, (symbol,))
        out = {**_with_age(used), "fallback": False}
        if latest is not None and latest["id"] != used["id"]:
            out["fallback"] = True
            out["fallback_reason"] = (
                f"last attempt at {iso(latest['calibrated_at'])} failed: {latest['message']}"
            )
            out["failed_attempt"] = _with_age(latest)
        return out

    async def calibrate_and_store(self, symbol: str, why: str) -> tuple[int, dict[str, Any]]:
        """Fit, store the attempt, log it: (HTTP status, body)."""
        try:
            fit, rows, _, _ = await self.fit(symbol)
        except DataProblem as e:
            self.logs.write("ERROR", f"calibration of {symbol} ({why}) not attempted: {e}")
            return e.status, {"error": str(e), "reason": e.reason, "symbol": symbol}
        stored = await self.db.fetch_one(
            INSERT_SQL,
            {
                "symbol": symbol,
                "params": Jsonb(fit.params.to_dict()),
                "rmse": round(fit.rmse, 6) if np.isfinite(fit.rmse) else None,
                "iterations": fit.iterations,
                "converged": fit.converged,
                "window_start": rows[0]["ts"] - dt.timedelta(seconds=QUOTE_WINDOW_S),
                "window_end": rows[0]["ts"],
                "n_quotes": len(rows),
                "duration_s": round(fit.duration_s, 3),
                "message": fit.message,
            },
        )
        assert stored is not None  # INSERT ... RETURNING gives its row
        row = _with_age(stored)
        if fit.converged:
            self.logs.write(
                "INFO",
                f"calibrated {symbol} ({why}): rmse={fit.rmse:.4f} iterations={fit.iterations} "
                f"in {fit.duration_s:.2f}s",
            )
            return 201, {"recalibrated": True, "calibration": row}
        previous = await self.in_use(symbol)
        since = f"from {iso(previous['calibrated_at'])}" if previous else "(none available)"
        message = (
            f"calibration of {symbol} failed: {fit.message} (rmse={fit.rmse:.4f}, "
            f"iterations={fit.iterations}, at bounds: {', '.join(fit.at_bounds) or 'none'}); "
            f"serving the previous parameters {since}"
        )
        self.logs.write("ERROR", f"{message} ({why})")
        return 422, {"error": message, "attempt": row, "in_use": previous}


# -- routes ---------------------------------------------------------------------------------


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _symbol(request: Request) -> str:
    return request.query_params.get("symbol", "").strip().upper()


async def livez(request: Request) -> Response:
    return PlainTextResponse("ok")


async def status(request: Request) -> Response:
    """Per symbol its last attempt (converged, rmse, iterations, calibrated_at, message,
    duration_s, age_s), its last success and the parameters in use, and its newest surface."""
    svc = _service(request)
    rows = await svc.db.fetch(STATUS_SQL, {"window": QUOTE_WINDOW_S})
    for row in rows:
        row["age_s"] = age_s(row["calibrated_at"])
        last = row["last_success_at"]
        row["last_success_age_s"] = age_s(last) if last is not None else None
        quoted = row["latest_quote_at"]
        row["latest_quote_age_s"] = age_s(quoted) if quoted is not None else None
    return Json(
        {
            "calibrations": rows,
            "quote_window_s": QUOTE_WINDOW_S,
            "config_overridden": svc.optimiser_config() != heston.OptimiserConfig(),
        }
    )


async def _parameters(request: Request) -> Response:
    symbol = _symbol(request)
    if not symbol:
        return error(400, "symbol is required")
    used = await _service(request).in_use(symbol)
    if used is None:
        return error(404, f"no converged calibration for {symbol}")
    return Json(used)


async def _recalibrate(request: Request) -> Response:
    if not bearer_ok(request, ADMIN_TOKEN_ENV):
        return unauthorized()
    body = await json_body(request)
    symbol = str(body.get("symbol", "")).strip().upper()
    if not symbol:
        return error(400, "symbol is required")
    svc = _service(request)
    previous = await svc.in_use(symbol)
    if not body.get("force") and previous and previous["age_s"] < FRESH_ENOUGH_S:
        return Json({"recalibrated": False, "calibration": previous})
    code, answer = await svc.calibrate_and_store(symbol, "forced" if body.get("force") else "api")
    return Json(answer, status_code=code)


async def heston_route(request: Request) -> Response:
    if request.method == "POST":
        return await _recalibrate(request)
    return await _parameters(request)


async def config_route(request: Request) -> Response:
    """`HestonCalibrator().get_default_config()`, beside the config now in force."""
    in_force = _service(request).optimiser_config()
    defaults = heston.OptimiserConfig()
    changed = [
        k for k, v in in_force.to_dict().items() if defaults.to_dict()[k] != v and k != "bounds"
    ] + [f"bounds.{k}" for k, v in in_force.bounds.items() if defaults.bounds[k] != v]
    return Json(
        {"config": in_force.to_dict(), "defaults": defaults.to_dict(), "overridden": changed}
    )


def _quote_rows(rows: list[dict[str, Any]], model: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "expiry": r["expiry"],
            "days": r["days"],
            "strike": r["strike"],
            "option_type": r["option_type"],
            "implied_vol": r["implied_vol"],
            "model_vol": round(float(m), 6) if np.isfinite(m) else None,
        }
        for r, m in zip(rows, model, strict=True)
    ]


async def test_route(request: Request) -> Response:
    """The seed's `test_calibration --symbol SPY`: a fit with the config in force, not stored."""
    symbol = _symbol(request)
    if not symbol:
        return error(400, "symbol is required")
    svc = _service(request)
    try:
        fit, rows, _, config = await svc.fit(symbol)
    except DataProblem as e:
        return error(e.status, str(e), reason=e.reason, symbol=symbol)
    stored = await svc.in_use(symbol)
    return Json(
        {
            "symbol": symbol,
            **fit.to_dict(),
            "max_rmse": config.max_rmse,
            "n_quotes": len(rows),
            "quoted_at": rows[0]["ts"],
            "spot": rows[0]["underlying"],
            "stored": stored,
            "quotes": _quote_rows(rows, fit.model_vols),
        }
    )


async def surface_route(request: Request) -> Response:
    """The newest quotes of a symbol beside the implied vols of the parameters in use."""
    symbol = _symbol(request)
    if not symbol:
        return error(400, "symbol is required")
    svc = _service(request)
    try:
        rows, surface = await svc.quotes(symbol)
    except DataProblem as e:
        return error(e.status, str(e), reason=e.reason, symbol=symbol)
    used = await svc.in_use(symbol)
    if used is None:
        model = np.full(len(rows), np.nan)
    else:
        params = heston.HestonParams.of(used["params"])
        model = await asyncio.to_thread(heston.heston_vols, params, surface)
    return Json(
        {
            "symbol": symbol,
            "quoted_at": rows[0]["ts"],
            "spot": rows[0]["underlying"],
            "in_use": used,
            "quotes": _quote_rows(rows, model),
        }
    )


# -- background: the scheduler and, under the calibration-oom fault, the batch ---------------


async def scheduler(svc: Service) -> None:
    """Recalibrate each symbol some hours after its last attempt, unless paused (the
    stale-calibration fault: a scheduler that stopped is how parameters go stale)."""
    while True:
        await asyncio.sleep(SCHEDULER_TICK_S)
        try:
            if read_control(svc.lab).get("calibration_paused"):
                continue
            rows = await svc.db.fetch(
                "SELECT symbol, max(calibrated_at) AS at FROM calibrations GROUP BY symbol"
            )
            for row in rows:
                if age_s(row["at"]) > SCHEDULE_EVERY_S:
                    await svc.calibrate_and_store(row["symbol"], "scheduled")
        except Exception as e:  # the scheduler outlives any outage
            log.warning("scheduler: %s", short_reason(e))


def batch_lines(batch: dict[str, Any], limit: str) -> list[tuple[str, str]]:
    surfaces = int(batch.get("surfaces", 1180))
    per_mib = float(batch.get("per_surface_mib", 2.7))
    working = surfaces * per_mib / 1024
    return [
        (
            "INFO",
            f"batch calibration started: {surfaces} surfaces in one batch "
            f"({BATCH_MARKER}{surfaces})",
        ),
        (
            "INFO",
            f"loading option chains: {surfaces} surfaces x {per_mib} MiB, "
            f"estimated working set {working:.1f}Gi (memory limit {limit})",
        ),
        ("WARN", f"memory usage at 97% of limit {limit} while building batch Jacobians"),
    ]


async def oom_batch(svc: Service) -> None:
    """While calibration-oom is on, every new calibration container starts the large batch
    that gets it killed: its log says so before the kill (`kubectl logs --previous`)."""
    while True:
        await asyncio.sleep(OOM_TICK_S)
        control = read_control(svc.lab)
        limit = (control.get("oom_killed") or {}).get(DEPLOYMENT)
        if not limit:
            continue
        batch = control.get("calibration_batch") or {}
        for pod in svc.logs.pods():
            if not svc.logs.contains(pod, BATCH_MARKER):
                for level, line in batch_lines(batch, str(limit)):
                    svc.logs.logs.write(pod, level, line)


def build_app(config: LabConfig) -> Starlette:
    metrics = CalibrationMetrics()

    async def refresh_metrics() -> None:
        svc: Service = app.state.service
        await metrics.refresh(svc.db, STATUS_SQL, QUOTE_WINDOW_S)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = Service(config)
        app.state.service = svc
        tasks = [asyncio.create_task(scheduler(svc)), asyncio.create_task(oom_batch(svc))]
        try:
            yield
        finally:
            for task in tasks:
                await stop_task(task)
            with contextlib.suppress(Exception):
                await svc.db.close()

    app = Starlette(
        routes=[
            Route("/livez", livez),
            Route("/metrics", serve_metrics),
            Route("/v1/calibration/status", status),
            Route("/v1/calibration/heston", heston_route, methods=["GET", "POST"]),
            Route("/v1/calibration/config", config_route),
            Route("/v1/calibration/test", test_route),
            Route("/v1/calibration/surface", surface_route),
        ],
        lifespan=lifespan,
        exception_handlers={Unavailable: unavailable_handler},
    )
    app.state.metrics = metrics
    app.state.refresh_metrics = refresh_metrics
    return app


def main(config: LabConfig) -> None:
    serve(build_app(config), config, "calibration_service")
