"""The only module of irlib.postgres that imports psycopg. Every connection is short-lived,
read-only unless a mitigation asks otherwise, and bounded by connect and statement timeouts,
so a hung server costs a check its timeout and nothing more."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = ["APPLICATION_NAME", "Error", "OperationalError", "connect", "query", "sql"]

APPLICATION_NAME = "irlib"  # how our own sessions appear in pg_stat_activity
Error = psycopg.Error
OperationalError = psycopg.OperationalError


def connect(
    dsn: str,
    *,
    timeout_s: float,
    password_env: str | None = None,
    autocommit: bool = True,
    read_only: bool = True,
) -> psycopg.Connection[dict[str, Any]]:
    """A connection bounded by connect and statement timeouts; read-only (every transaction
    refuses writes) unless a mitigation asks for `read_only=False`."""
    kwargs: dict[str, Any] = {}
    options = f"-c statement_timeout={int(timeout_s * 1000)}"
    if read_only:
        options += " -c default_transaction_read_only=on"
    if password_env and os.environ.get(password_env):
        kwargs["password"] = os.environ[password_env]
    conn = psycopg.connect(
        dsn,
        connect_timeout=max(1, int(timeout_s)),
        autocommit=autocommit,
        row_factory=dict_row,
        application_name=APPLICATION_NAME,
        options=options,
        **kwargs,
    )
    return conn


def query(
    dsn: str,
    sql: str,
    params: Sequence[Any] = (),
    *,
    timeout_s: float,
    password_env: str | None = None,
) -> list[dict[str, Any]]:
    with connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
