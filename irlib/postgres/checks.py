"""Read-only PostgreSQL checks: the runbook's "database connectivity" and
"SELECT count(*) FROM pg_stat_activity", with the connections broken down by state."""

from __future__ import annotations

import time

from irlib.postgres import _client
from irlib.results import Check, Evidence, Status

TARGET = "postgres"


def check_connectivity(
    dsn: str, *, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    t0 = time.monotonic()
    try:
        rows = _client.query(
            dsn,
            "SELECT version() AS version, now() AS now, pg_postmaster_start_time() AS started",
            timeout_s=timeout_s,
            password_env=password_env,
        )
    except _client.OperationalError as e:
        return Check(
            "database connectivity",
            TARGET,
            Status.FAIL,
            f"cannot connect: {_first_line(e)}",
            duration_s=time.monotonic() - t0,
            facts={"reachable": False},
        )
    row = rows[0]
    return Check(
        "database connectivity",
        TARGET,
        Status.OK,
        f"connected in {(time.monotonic() - t0) * 1000:.0f} ms",
        (Evidence.table("server", [row]),),
        duration_s=time.monotonic() - t0,
        facts={"reachable": True},
    )


def check_connection_count(
    dsn: str, *, warn_ratio: float = 0.8, timeout_s: float = 5.0, password_env: str | None = None
) -> Check:
    """Connections against max_connections, by state (active, idle, idle in transaction)."""
    t0 = time.monotonic()
    name = "database connections"
    try:
        rows = _client.query(
            dsn,
            "SELECT coalesce(state, 'background') AS state, count(*) AS connections "
            "FROM pg_stat_activity GROUP BY 1 ORDER BY 2 DESC",
            timeout_s=timeout_s,
            password_env=password_env,
        )
        limit = _client.query(
            dsn,
            "SELECT current_setting('max_connections')::int AS m",
            timeout_s=timeout_s,
            password_env=password_env,
        )[0]["m"]
    except _client.OperationalError as e:
        # the count is unknown, not bad: connectivity is the check that finds the database down
        return Check(
            name,
            TARGET,
            Status.ERROR,
            f"cannot count: {_first_line(e)}",
            duration_s=time.monotonic() - t0,
            facts={"reachable": False},
        )
    total = sum(r["connections"] for r in rows)
    ratio = total / limit
    status = Status.WARN if ratio >= warn_ratio else Status.OK
    return Check(
        name,
        TARGET,
        status,
        f"{total} of max_connections {limit} ({ratio:.0%})",
        (Evidence.table("pg_stat_activity by state", rows),),
        duration_s=time.monotonic() - t0,
        facts={"reachable": True, "connections": total, "max_connections": limit},
    )


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
