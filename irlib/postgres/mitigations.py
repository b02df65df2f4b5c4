"""Guarded PostgreSQL writes of the high-latency runbook: CREATE INDEX CONCURRENTLY, ANALYZE,
pg_terminate_backend. Each is a plan (irlib.guard.Plan) first and runs only through the guard.

Every table, column and pid is validated twice before any SQL runs: by its shape (the guard's
pattern, again here) and against the catalog with bound parameters; identifiers then reach SQL
only through psycopg.sql.Identifier, never pasted into a statement.
"""

from __future__ import annotations

import re
import time
from typing import Any

from irlib.errors import UsageError
from irlib.guard import Plan
from irlib.postgres import _client

sql = _client.sql
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
DDL_TIMEOUT_S = 120.0  # building an index on a big table takes longer than a check may


def valid_identifier(name: Any, what: str = "identifier") -> str:
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise UsageError(
            f"{what} {name!r} refused: not a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def valid_pid(pid: Any) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int | str):
        raise UsageError(f"pid {pid!r} refused: not a process id")
    text = str(pid)
    if not re.fullmatch(r"[1-9][0-9]{0,9}", text) or int(text) > 2**31 - 1:
        raise UsageError(f"pid {pid!r} refused: not a process id")
    return int(text)


def _table_columns(conn: Any, table: str) -> set[str]:
    """The columns of `table` in the search path; UsageError when there is no such table."""
    rows = conn.execute(
        "SELECT c.column_name FROM information_schema.columns c "
        "WHERE c.table_name = %s AND c.table_schema = ANY(current_schemas(false))",
        (table,),
    ).fetchall()
    if not rows:
        raise UsageError(f"table {table!r} does not exist (in the search path): refused")
    return {r["column_name"] for r in rows}


def _checked_index(conn: Any, table: str, columns: list[str]) -> None:
    valid_identifier(table, "table")
    if not columns or len(columns) > 8:
        raise UsageError("an index needs 1 to 8 columns")
    for c in columns:
        valid_identifier(c, "column")
    existing = _table_columns(conn, table)
    missing = [c for c in columns if c not in existing]
    if missing:
        raise UsageError(f"table {table!r} has no column {', '.join(map(repr, missing))}: refused")


def index_name(table: str, columns: list[str]) -> str:
    return ("idx_" + "_".join([table, *columns]))[:63]


def _create_index_sql(table: str, columns: list[str]) -> sql.Composed:
    return sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(index_name(table, columns)),
        sql.Identifier(table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
    )


def plan_create_index(
    dsn: str,
    table: str,
    columns: list[str],
    *,
    recommended: bool = True,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Plan:
    valid_identifier(table, "table")
    for c in columns:
        valid_identifier(c, "column")
    with _client.connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
        _checked_index(conn, table, columns)
        stats = conn.execute(
            "SELECT n_live_tup AS rows, seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables "
            "WHERE relname = %s AND schemaname = ANY(current_schemas(false))",
            (table,),
        ).fetchone()
        statement = _create_index_sql(table, columns).as_string(conn)
    return Plan(
        f"create-index:{table}({','.join(columns)})",
        f"build index {index_name(table, columns)} on {table} ({', '.join(columns)}) "
        "without blocking writes (CONCURRENTLY, outside a transaction)",
        statement,
        before=dict(stats or {}),
        recommended=recommended,
    )


def apply_create_index(
    dsn: str, table: str, columns: list[str], *, password_env: str | None = None
) -> dict[str, Any]:
    """Build the index; an invalid leftover of a failed CONCURRENTLY build is dropped."""
    valid_identifier(table, "table")
    for c in columns:
        valid_identifier(c, "column")
    t0 = time.monotonic()
    name = index_name(table, columns)
    # autocommit: CREATE INDEX CONCURRENTLY cannot run inside a transaction block
    with _client.connect(
        dsn, timeout_s=DDL_TIMEOUT_S, password_env=password_env, autocommit=True, read_only=False
    ) as conn:
        _checked_index(conn, table, columns)
        try:
            conn.execute(_create_index_sql(table, columns))
        finally:
            valid = conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = %s",
                (name,),
            ).fetchone()
            if valid is not None and not valid["indisvalid"]:
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                )
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return {
        "index": name,
        "table": table,
        "columns": columns,
        "valid": True,
        "duration_s": round(time.monotonic() - t0, 2),
    }


def plan_analyze(
    dsn: str,
    table: str,
    *,
    recommended: bool = True,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Plan:
    valid_identifier(table, "table")
    with _client.connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
        _table_columns(conn, table)
        stats = conn.execute(
            "SELECT n_live_tup AS rows, n_mod_since_analyze, last_analyze, last_autoanalyze "
            "FROM pg_stat_user_tables WHERE relname = %s "
            "AND schemaname = ANY(current_schemas(false))",
            (table,),
        ).fetchone()
        statement = sql.SQL("ANALYZE {}").format(sql.Identifier(table)).as_string(conn)
    return Plan(
        f"analyze:{table}",
        f"refresh the planner's statistics of {table}",
        statement,
        before={k: str(v) for k, v in (stats or {}).items()},
        recommended=recommended,
    )


def apply_analyze(dsn: str, table: str, *, password_env: str | None = None) -> dict[str, Any]:
    valid_identifier(table, "table")
    t0 = time.monotonic()
    with _client.connect(
        dsn, timeout_s=DDL_TIMEOUT_S, password_env=password_env, read_only=False
    ) as conn:
        _table_columns(conn, table)
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return {"table": table, "analyzed": True, "duration_s": round(time.monotonic() - t0, 2)}


def _backend(conn: Any, pid: int) -> dict[str, Any]:
    """The backend `pid` may be terminated: it exists, is a client backend, is not ours."""
    row = conn.execute(
        "SELECT pid, backend_type, application_name, usename, state, "
        "round(extract(epoch FROM now() - xact_start)::numeric, 1)::float AS xact_s, "
        "left(query, 200) AS query, pid = pg_backend_pid() AS ours "
        "FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    if row is None:
        raise UsageError(f"no PostgreSQL backend has pid {pid}: nothing to terminate")
    if row["backend_type"] != "client backend":
        raise UsageError(
            f"pid {pid} is a {row['backend_type']} (a PostgreSQL system process), "
            "not a client backend: refused"
        )
    if row["ours"] or row["application_name"] == _client.APPLICATION_NAME:
        raise UsageError(f"pid {pid} is this runbook's own connection: refused")
    return dict(row)


def plan_terminate(
    dsn: str,
    pid: int | str,
    *,
    recommended: bool = True,
    timeout_s: float = 5.0,
    password_env: str | None = None,
) -> Plan:
    n = valid_pid(pid)
    with _client.connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
        row = _backend(conn, n)
    return Plan(
        f"terminate:{n}",
        f"terminate backend {n} ({row['application_name'] or '?'}, {row['state']}, "
        f"transaction open {row['xact_s'] or 0:g} s) running: {row['query']}",
        f"SELECT pg_terminate_backend({n});",
        before={k: row[k] for k in ("pid", "application_name", "usename", "state", "query")},
        recommended=recommended,
    )


def apply_terminate(
    dsn: str, pid: int | str, *, timeout_s: float = 5.0, password_env: str | None = None
) -> dict[str, Any]:
    n = valid_pid(pid)
    with _client.connect(
        dsn, timeout_s=timeout_s, password_env=password_env, read_only=False
    ) as conn:
        row = _backend(conn, n)  # again: the pid may have gone, or been reused, since the plan
        done = conn.execute(
            "SELECT pg_terminate_backend(%s, %s) AS ok", (n, int(timeout_s * 1000))
        ).fetchone()
        gone = conn.execute(
            "SELECT count(*) = 0 AS gone FROM pg_stat_activity WHERE pid = %s", (n,)
        ).fetchone()
    return {
        "pid": n,
        "application_name": row["application_name"],
        "query": row["query"],
        "terminated": bool(done and done["ok"]),
        "gone": bool(gone and gone["gone"]),
    }
