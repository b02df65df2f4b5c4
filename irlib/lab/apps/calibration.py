"""The API's Heston calibration endpoints: status per symbol, the parameters in use
(the last converged fit: the automatic fallback) and a forced recalibration.

Reads and writes the `calibrations` table through the API's database; a "fit" here is the
previous parameters nudged a little, refused when market data is stale.
"""

from __future__ import annotations

import random
from typing import Any

from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irlib.lab.apps._common import Json, age_s, bearer_ok, error, json_body, unauthorized

MARKET_DATA_MAX_AGE_S = 60.0  # a fit on older ticks would be a fit to yesterday
FRESH_ENOUGH_S = 3600.0  # without `force`, a calibration this recent is kept

STATUS_SQL = """
    SELECT c.symbol, c.model, c.converged, c.rmse, c.iterations, c.calibrated_at,
           ok.calibrated_at AS last_success_at
    FROM (SELECT DISTINCT ON (symbol) * FROM calibrations
          ORDER BY symbol, calibrated_at DESC) c
    LEFT JOIN LATERAL (SELECT calibrated_at FROM calibrations
                       WHERE symbol = c.symbol AND converged
                       ORDER BY calibrated_at DESC LIMIT 1) ok ON true
    ORDER BY c.symbol
"""
CALIBRATION_COLUMNS = """id, symbol, model, params, rmse, iterations, converged, calibrated_at,
    data_window_start, data_window_end"""
LATEST_SQL = f"""SELECT {CALIBRATION_COLUMNS} FROM calibrations WHERE symbol = %s
    ORDER BY calibrated_at DESC LIMIT 1"""
LATEST_CONVERGED_SQL = f"""SELECT {CALIBRATION_COLUMNS} FROM calibrations
    WHERE symbol = %s AND converged ORDER BY calibrated_at DESC LIMIT 1"""
INSERT_SQL = f"""INSERT INTO calibrations (symbol, params, rmse, iterations, converged,
        data_window_start, data_window_end)
    VALUES (%(symbol)s, %(params)s, %(rmse)s, %(iterations)s, %(converged)s,
        now() - interval '1 hour', now())
    RETURNING {CALIBRATION_COLUMNS}"""


def _with_age(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "age_s": age_s(row["calibrated_at"])}


async def status(request: Request) -> Response:
    rows = await request.app.state.db.fetch(STATUS_SQL)
    for row in rows:
        row["age_s"] = age_s(row["calibrated_at"])
        last = row["last_success_at"]
        row["last_success_age_s"] = age_s(last) if last is not None else None
    return Json({"calibrations": rows})


async def _parameters(request: Request) -> Response:
    symbol = request.query_params.get("symbol", "").upper()
    if not symbol:
        return error(400, "symbol is required")
    db = request.app.state.db
    used = await db.fetch_one(LATEST_CONVERGED_SQL, (symbol,))
    if used is None:
        return error(404, f"no converged calibration for {symbol}")
    latest = await db.fetch_one(LATEST_SQL, (symbol,))
    fallback = latest is not None and latest["id"] != used["id"]
    return Json({**_with_age(used), "fallback": fallback})


def _nudged(params: dict[str, float]) -> dict[str, float]:
    return {k: round(v * random.uniform(0.98, 1.02), 5) for k, v in params.items()}


async def _recalibrate(request: Request, token_env: str) -> Response:
    if not bearer_ok(request, token_env):
        return unauthorized()
    body = await json_body(request)
    symbol = str(body.get("symbol", "")).upper()
    db = request.app.state.db
    previous = await db.fetch_one(LATEST_CONVERGED_SQL, (symbol,)) if symbol else None
    if previous is None:
        return error(404, f"no calibration to start from for {symbol or '(no symbol)'}")
    if not body.get("force") and age_s(previous["calibrated_at"]) < FRESH_ENOUGH_S:
        return Json({"recalibrated": False, "calibration": _with_age(previous)})
    tick = await db.fetch_one(
        "SELECT ts FROM market_data_ticks WHERE symbol = %s ORDER BY ts DESC LIMIT 1", (symbol,)
    )
    stale = tick is None or age_s(tick["ts"]) > MARKET_DATA_MAX_AGE_S
    attempt = {
        "symbol": symbol,
        "params": Jsonb(_nudged(previous["params"])),
        "rmse": None if stale else round(random.uniform(0.004, 0.012), 5),
        "iterations": 500 if stale else random.randint(40, 120),
        "converged": not stale,
    }
    inserted = await db.fetch_one(INSERT_SQL, attempt)
    assert inserted is not None  # INSERT ... RETURNING gives its row
    row = _with_age(inserted)
    if stale:
        age = "none" if tick is None else f"{age_s(tick['ts']):.0f} s old"
        return error(503, f"market data stale for {symbol} (latest tick: {age})", attempt=row)
    return Json({"recalibrated": True, "calibration": row}, status_code=201)


def routes(token_env: str) -> list[Route]:
    async def heston(request: Request) -> Response:
        if request.method == "POST":
            return await _recalibrate(request, token_env)
        return await _parameters(request)

    return [
        Route("/v1/calibration/status", status),
        Route("/v1/calibration/heston", heston, methods=["GET", "POST"]),
    ]
