"""Create the lab's trading database and fill it with a month of plausible history.

Talks only to the lab's PostgreSQL (psycopg). Everything is generated server-side with
`generate_series` inside one transaction, so a database is either fully seeded or untouched;
a second call finds it seeded and only renews calibrations that went stale meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from importlib import resources
from typing import NamedTuple

import numpy as np
import psycopg

from irlib.lab import surfaces

log = logging.getLogger(__name__)


class Symbol(NamedTuple):
    price: float  # where the seeded history starts
    vol: float  # at-the-money implied volatility


SYMBOLS: dict[str, Symbol] = {
    "SPY": Symbol(590.0, 0.15),
    "QQQ": Symbol(510.0, 0.20),
    "AAPL": Symbol(230.0, 0.25),
    "MSFT": Symbol(420.0, 0.24),
    "NVDA": Symbol(140.0, 0.45),
    "TSLA": Symbol(340.0, 0.55),
    "AMZN": Symbol(210.0, 0.30),
    "IWM": Symbol(235.0, 0.22),
}
ACCOUNTS = ("ACC-001", "ACC-002", "ACC-003")
STRATEGIES = ("momentum_spy", "mean_reversion_qqq", "heston_vol_arb", "pairs_aapl_msft", "mm_iwm")
ORDERS = 200_000  # the last 30 days: positions, fills and reports come from these
ORDER_HISTORY_DAYS = 30
# Cancelled orders of the year before, kept in the same table as a platform keeps its order
# book: 2M rows in all, so that the API's hot "recent orders of a symbol" query without its
# index costs a scan of 2M rows (0.15-0.5 s of CPU, by machine) against 0.2 ms by index.
ORDER_ARCHIVE = 1_800_000
ORDER_ARCHIVE_DAYS = 365
CALIBRATION_MAX_AGE = "6 hours"  # older than this when a lab is restarted: calibrate again
AFTER_LOAD = "-- @after-load"
# the tables the apps query; autovacuum analyzes the rest a minute later
ANALYZED = (
    "orders",
    "positions",
    "market_data_ticks",
    "calibrations",
    "strategies",
    "broker.orders",
)
LOCK_KEY = 0x1B_5EED  # advisory lock: two callers never seed at once

# Each step is one INSERT ... SELECT over generate_series; the parameters are in _params().
STEPS: list[tuple[str, str]] = [
    (
        "strategies",
        """INSERT INTO strategies (id, name)
           SELECT n, name FROM unnest(%(strategies)s::text[]) WITH ORDINALITY AS s(name, n)""",
    ),
    (
        "orders archive",
        # ids below the recent orders', so that "newest first" by id stays the recent ones
        """INSERT INTO orders (id, strategy_id, account, symbol, side, qty, price, state,
                               broker_order_id, created_at, updated_at)
           SELECT i, 1 + i %% %(n_strategies)s, (%(accounts)s::text[])[1 + i %% %(n_accounts)s],
                  (%(symbols)s::text[])[1 + i %% %(n_symbols)s],
                  CASE WHEN i %% 2 = 0 THEN 'buy' ELSE 'sell' END, 10,
                  (%(prices)s::float8[])[1 + i %% %(n_symbols)s], 'cancelled', NULL, at, at
           FROM generate_series(1, %(archive)s) AS i
           CROSS JOIN LATERAL (SELECT now() - %(archive_starts_s)s * interval '1 second'
                                      + i * %(archive_step)s * interval '1 second' AS at) a""",
    ),
    (
        "orders",
        """INSERT INTO orders (id, strategy_id, account, symbol, side, qty, price, state,
                               broker_order_id, created_at, updated_at)
           SELECT %(archive)s + i, 1 + i %% %(n_strategies)s,
                  (%(accounts)s::text[])[1 + i %% %(n_accounts)s],
                  (%(symbols)s::text[])[k], side, qty,
                  round(((%(prices)s::float8[])[k] * (1 + (random() - 0.5) * 0.04))::numeric, 2),
                  state, CASE WHEN state IN ('new', 'rejected') THEN NULL
                              ELSE 'BRK-' || lpad(i::text, 9, '0') END,
                  at, CASE WHEN state = 'new' THEN at ELSE at + interval '80 milliseconds' END
           FROM (SELECT i, 1 + floor(random() * %(n_symbols)s)::int AS k,
                        CASE WHEN random() < 0.55 THEN 'buy' ELSE 'sell' END AS side,
                        (1 + floor(random() * 10)::int) * 10 AS qty,
                        CASE WHEN i > %(orders)s - 3 THEN 'new'
                             WHEN i > %(orders)s - 10 THEN 'submitted'
                             WHEN r < 0.02 THEN 'rejected'
                             WHEN r < 0.04 THEN 'cancelled'
                             ELSE 'filled' END AS state,
                        now() - (%(orders)s - i) * %(order_step)s * interval '1 second' AS at
                 FROM (SELECT i, random() AS r FROM generate_series(1, %(orders)s) AS i) g) o""",
    ),
    ("orders_id_seq", "SELECT setval('orders_id_seq', %(archive)s + %(orders)s)"),
    (
        "execution_reports_id_seq",
        "SELECT setval('execution_reports_id_seq', %(archive)s + %(orders)s)",
    ),
    (
        "execution_reports",
        """INSERT INTO execution_reports (id, order_id, broker_fill_id, qty, price, executed_at)
           SELECT id, id, 'FILL-' || substr(broker_order_id, 5), qty, price, updated_at
           FROM orders WHERE state = 'filled' ORDER BY id""",
    ),
    (
        "positions",
        # the same rows as execution_reports (one fill per filled order), read from orders
        # because that needs no join
        """INSERT INTO positions (account, symbol, qty, avg_price, updated_at)
           SELECT account, symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END),
                  round((sum(qty * price::float8) FILTER (WHERE side = 'buy')
                         / sum(qty) FILTER (WHERE side = 'buy'))::numeric, 4),
                  max(updated_at)
           FROM orders WHERE state = 'filled' GROUP BY account, symbol""",
    ),
    (
        "market_data_ticks",
        """INSERT INTO market_data_ticks (symbol, ts, bid, ask, last, volume)
           SELECT symbol, ts, round(last - last * 0.00005, 2), round(last + last * 0.00005, 2),
                  round(last, 2), volume
           FROM (SELECT s.symbol, t.ts, 100 + floor(random() * 9900)::bigint AS volume,
                        (s.price * exp(sum((random() - 0.5) * 0.0006)
                                       OVER (PARTITION BY s.symbol ORDER BY t.ts)))::numeric
                        AS last
                 FROM unnest(%(symbols)s::text[], %(prices)s::float8[]) AS s(symbol, price)
                 CROSS JOIN generate_series(now() - interval '2 hours', now(),
                                            interval '2 seconds') AS t(ts)) w""",
    ),
    # synthetic Heston surfaces (irlib.lab.surfaces), priced in Python: see _params
    ("option_quotes", surfaces.INSERT_QUOTES),
    (
        "calibrations",
        # the generating parameters of the surfaces, as past fits found them (a little off)
        """INSERT INTO calibrations (symbol, params, rmse, iterations, converged, calibrated_at,
                                    data_window_start, data_window_end, n_quotes, duration_s,
                                    message)
           SELECT s.symbol,
                  jsonb_build_object(
                      'kappa', round((s.kappa * (0.9 + random() * 0.2))::numeric, 6),
                      'theta', round((s.theta * (0.98 + random() * 0.04))::numeric, 6),
                      'sigma', round((s.sigma * (0.95 + random() * 0.1))::numeric, 6),
                      'rho', round((s.rho + (random() - 0.5) * 0.02)::numeric, 6),
                      'v0', round((s.v0 * (0.98 + random() * 0.04))::numeric, 6)),
                  round((0.0015 + random() * 0.0008)::numeric, 6), 7 + floor(random() * 10)::int,
                  true, at, at - interval '10 minutes', at - interval '1 minute',
                  %(quotes_per_surface)s, round((0.05 + random() * 0.1)::numeric, 3),
                  '`ftol` termination condition is satisfied.'
           FROM unnest(%(symbols)s::text[], %(kappas)s::float8[], %(thetas)s::float8[],
                       %(sigmas)s::float8[], %(rhos)s::float8[], %(v0s)s::float8[])
                WITH ORDINALITY AS s(symbol, kappa, theta, sigma, rho, v0, k)
           CROSS JOIN generate_series(11, 0, -1) AS h
           CROSS JOIN LATERAL (SELECT now() - interval '20 minutes' - h * interval '4 hours'
                                      - k * interval '1 minute' AS at) a
           ORDER BY at""",
    ),
    (
        "broker.accounts",
        """INSERT INTO broker.accounts (account_id, name, cash)
           SELECT a, 'Quant Fund ' || a, 25000000 FROM unnest(%(accounts)s::text[]) AS a""",
    ),
    (
        "broker.orders",
        # the broker keeps a day of order history; older trades live on as position balances
        """INSERT INTO broker.orders (order_id, account_id, client_order_id, symbol, side, qty,
                                     limit_price, status, created_at, updated_at)
           SELECT broker_order_id, account, 'ORD-' || id, symbol, side, qty, price,
                  CASE state WHEN 'submitted' THEN 'accepted' ELSE state END,
                  created_at, updated_at
           FROM orders
           WHERE broker_order_id IS NOT NULL AND created_at > now() - interval '1 day'""",
    ),
    (
        "broker.fills",
        """INSERT INTO broker.fills (fill_id, order_id, qty, price, executed_at)
           SELECT 'FILL-' || substr(broker_order_id, 5), broker_order_id, qty, price, updated_at
           FROM orders WHERE state = 'filled' AND created_at > now() - interval '1 day'""",
    ),
    (
        "broker.positions",
        """INSERT INTO broker.positions (account_id, symbol, qty, avg_price, updated_at)
           SELECT account, symbol, qty, avg_price, updated_at FROM positions""",
    ),
]

REFRESH_CALIBRATIONS = """
    INSERT INTO calibrations (symbol, model, params, rmse, iterations, converged, calibrated_at,
                              data_window_start, data_window_end)
    SELECT symbol, model, params, rmse, iterations, true, now(),
           now() - interval '1 hour', now() - interval '1 minute'
    FROM (SELECT DISTINCT ON (symbol) * FROM calibrations WHERE converged
          ORDER BY symbol, calibrated_at DESC) latest
    WHERE calibrated_at < now() - %(max_age)s::interval
"""


SURFACE_HISTORY = 6  # snapshots of option quotes before now, 10 minutes apart


def _quote_columns() -> dict[str, list[object]]:
    rng = np.random.default_rng(42)  # the same surfaces every time
    now = dt.datetime.now(dt.UTC)
    rows = [
        row
        for symbol, info in SYMBOLS.items()
        for n in range(SURFACE_HISTORY, -1, -1)
        for row in surfaces.snapshot(symbol, info.price, now - n * dt.timedelta(minutes=10), rng)
    ]
    return surfaces.columns(rows)


def _params(orders: int, archive: int) -> dict[str, object]:
    generating = [surfaces.GENERATING[s] for s in SYMBOLS]
    return {
        **_quote_columns(),
        "quotes_per_surface": len(surfaces.EXPIRY_DAYS) * len(surfaces.STANDARD_MOVES),
        "kappas": [p.kappa for p in generating],
        "thetas": [p.theta for p in generating],
        "sigmas": [p.sigma for p in generating],
        "rhos": [p.rho for p in generating],
        "v0s": [p.v0 for p in generating],
        "orders": orders,
        "order_step": ORDER_HISTORY_DAYS * 86400 / orders,
        "archive": archive,
        "archive_starts_s": (ORDER_ARCHIVE_DAYS + ORDER_HISTORY_DAYS) * 86400,
        "archive_step": ORDER_ARCHIVE_DAYS * 86400 / max(archive, 1),
        "symbols": list(SYMBOLS),
        "prices": [s.price for s in SYMBOLS.values()],
        "vols": [s.vol for s in SYMBOLS.values()],
        "n_symbols": len(SYMBOLS),
        "accounts": list(ACCOUNTS),
        "n_accounts": len(ACCOUNTS),
        "strategies": list(STRATEGIES),
        "n_strategies": len(STRATEGIES),
    }


def schema_sql() -> tuple[str, str]:
    """The schema's DDL: (tables, what is created after the bulk load)."""
    text = resources.files("irlib.lab").joinpath("schema.sql").read_text()
    tables, _, after = text.partition(AFTER_LOAD)
    return tables, after


def is_seeded(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()
    return bool(row and row[0])


def create_schema_and_seed(dsn: str, *, orders: int = ORDERS, archive: int = ORDER_ARCHIVE) -> None:
    """Create and fill the trading database; on a seeded one only renew stale calibrations.

    A lab restarted days later would otherwise show every model as stale (a fault of its own).
    """
    t0 = time.monotonic()
    with psycopg.connect(dsn, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        if is_seeded(conn):
            conn.execute(REFRESH_CALIBRATIONS, {"max_age": CALIBRATION_MAX_AGE})
            return
        tables, after_load = schema_sql()
        conn.execute(tables)
        # JIT compiling these one-off statements costs more than running them
        conn.execute("SET LOCAL jit = off")
        conn.execute("SELECT setseed(0.42)")  # the same history every time
        params = _params(orders, archive)
        for name, sql in STEPS:
            t = time.monotonic()
            conn.execute(sql, params)
            log.debug("seeded %s in %.2f s", name, time.monotonic() - t)
        for ddl in filter(str.strip, after_load.split(";\n")):
            t = time.monotonic()
            conn.execute(ddl)
            log.debug("%s in %.2f s", ddl.strip().splitlines()[-1], time.monotonic() - t)
        t = time.monotonic()
        conn.execute(f"ANALYZE {', '.join(ANALYZED)}")
        log.debug("analyzed in %.2f s", time.monotonic() - t)
        # the runbook reads pg_stat_statements: let it show the platform, not the seed
        conn.execute("SELECT pg_stat_statements_reset()")
    log.info("seeded %s in %.1f s", dsn.rsplit("@", 1)[-1], time.monotonic() - t0)
