"""Synthetic option surfaces: what the lab's data-ingestion writes into `option_quotes`.

Each symbol has known Heston parameters (below); a snapshot prices a grid of out-of-the-money
options with them, adds a little noise to the implied vols, and returns rows for the table.
A healthy calibration therefore recovers these parameters. No I/O here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from irlib.lab.heston import HestonParams, Surface, bs_prices, heston_vols

RATE = 0.03  # the risk-free rate of every surface (continuously compounded)
EXPIRY_DAYS = (30, 60, 90, 180, 365)
STANDARD_MOVES = tuple(np.linspace(-2.0, 2.0, 9))  # strikes at these ATM standard deviations
NOISE = 0.002  # standard deviation of the noise on each implied vol (0.2 vol points)
SPREAD = 0.01  # bid/ask half-spread, relative to the price

# The generating parameters: what a healthy calibration of each symbol recovers.
GENERATING: dict[str, HestonParams] = {
    "SPY": HestonParams(kappa=2.0, theta=0.03, sigma=0.5, rho=-0.7, v0=0.0225),
    "QQQ": HestonParams(kappa=1.8, theta=0.045, sigma=0.6, rho=-0.65, v0=0.04),
    "AAPL": HestonParams(kappa=1.5, theta=0.065, sigma=0.55, rho=-0.5, v0=0.0625),
    "MSFT": HestonParams(kappa=1.6, theta=0.06, sigma=0.5, rho=-0.5, v0=0.0576),
    "NVDA": HestonParams(kappa=1.2, theta=0.2, sigma=0.9, rho=-0.4, v0=0.2025),
    "TSLA": HestonParams(kappa=1.0, theta=0.3, sigma=1.0, rho=-0.3, v0=0.3025),
    "AMZN": HestonParams(kappa=1.5, theta=0.09, sigma=0.6, rho=-0.5, v0=0.09),
    "IWM": HestonParams(kappa=2.0, theta=0.05, sigma=0.55, rho=-0.6, v0=0.0484),
}


def grid(spot: float, atm_vol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(days, strikes, is_call) of a snapshot: out-of-the-money puts below spot, calls above."""
    days = np.repeat(np.array(EXPIRY_DAYS, dtype=float), len(STANDARD_MOVES))
    moves = np.tile(np.array(STANDARD_MOVES), len(EXPIRY_DAYS))
    strikes = np.round(spot * np.exp(moves * atm_vol * np.sqrt(days / 365.0)), 2)
    return days, strikes, strikes >= spot


def snapshot(
    symbol: str,
    spot: float,
    ts: dt.datetime,
    rng: np.random.Generator,
    params: HestonParams | None = None,
) -> list[dict[str, Any]]:
    """One surface of `symbol` quoted at `ts`: rows of option_quotes."""
    p = params or GENERATING[symbol]
    days, strikes, is_call = grid(spot, float(np.sqrt(p.v0)))
    surface = Surface(spot, strikes, days / 365.0, is_call, RATE)
    vols = heston_vols(p, surface) + rng.normal(0.0, NOISE, len(days))
    prices = bs_prices(vols, surface)
    quoted = ts.astimezone(dt.UTC).date()
    return [
        {
            "symbol": symbol,
            "ts": ts,
            "expiry": quoted + dt.timedelta(days=int(d)),
            "strike": float(k),
            "option_type": "call" if c else "put",
            "bid": round(max(float(v) * (1 - SPREAD), 0.01), 4),
            "ask": round(max(float(v) * (1 + SPREAD), 0.02), 4),
            "implied_vol": round(float(iv), 6),
            "underlying": round(spot, 4),
        }
        for d, k, c, v, iv in zip(days, strikes, is_call, prices, vols, strict=True)
    ]


def columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as column arrays, for one `INSERT ... SELECT FROM unnest(...)`."""
    keys = (
        "symbol",
        "ts",
        "expiry",
        "strike",
        "option_type",
        "bid",
        "ask",
        "implied_vol",
        "underlying",
    )
    return {k: [r[k] for r in rows] for k in keys}


INSERT_QUOTES = """
    INSERT INTO option_quotes (symbol, ts, expiry, strike, option_type, bid, ask, implied_vol,
                               underlying)
    SELECT * FROM unnest(%(symbol)s::text[], %(ts)s::timestamptz[], %(expiry)s::date[],
                         %(strike)s::numeric[], %(option_type)s::text[], %(bid)s::numeric[],
                         %(ask)s::numeric[], %(implied_vol)s::float8[], %(underlying)s::numeric[])
"""
