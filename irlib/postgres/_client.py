"""The only module of irlib that imports psycopg (the platform's database is PostgreSQL too).
Every connection is short-lived, read-only unless a mitigation asks otherwise, and bounded by
connect and statement timeouts, so a hung server costs a check its timeout and nothing more.

What psycopg raises leaves here as irlib's target errors: a connection that cannot be made
is Unreachable, a statement cancelled by its timeout TimedOut, anything else the server
answered Refused. Inside a `with connect(...)` block, statements raise psycopg's own errors
(`Error`), so a check can go on after one of them; they are translated on leaving the block.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.rows import dict_row

from irlib.errors import Refused, TimedOut, Unreachable
from irlib.transport import secret

__all__ = [
    "APPLICATION_NAME",
    "Connection",
    "Error",
    "connect",
    "first_line",
    "query",
    "sql",
    "write",
]

APPLICATION_NAME = "irlib"  # how our own sessions appear in pg_stat_activity
Error = psycopg.Error
Connection = psycopg.Connection[dict[str, Any]]
Params = Sequence[Any] | Mapping[str, Any]


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _open(
    dsn: str, timeout_s: float, password_env: str | None, autocommit: bool, read_only: bool
) -> Connection:
    kwargs: dict[str, Any] = {}
    options = f"-c statement_timeout={int(timeout_s * 1000)}"
    if read_only:  # the server itself refuses a write from a read: belt and braces
        options += " -c default_transaction_read_only=on"
    password = secret(password_env)
    if password:
        kwargs["password"] = password
    try:
        return psycopg.connect(
            dsn,
            connect_timeout=max(1, int(timeout_s)),
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=APPLICATION_NAME,
            options=options,
            **kwargs,
        )
    except psycopg.Error as e:  # refused, no such host, timed out, bad password: not in
        raise Unreachable(f"cannot connect: {first_line(e)}") from e


@contextmanager
def connect(
    dsn: str,
    *,
    timeout_s: float,
    password_env: str | None = None,
    autocommit: bool = True,
    read_only: bool = True,
) -> Iterator[Connection]:
    """A connection bounded by connect and statement timeouts; read-only (every transaction
    refuses writes) unless a mitigation asks for `read_only=False`. Closed on leaving."""
    conn = _open(dsn, timeout_s, password_env, autocommit, read_only)
    try:
        with conn:
            yield conn
    except errors.QueryCanceled as e:
        raise TimedOut(f"no answer within {timeout_s:g} s: {first_line(e)}") from e
    except psycopg.OperationalError as e:  # the server went away under us
        raise Unreachable(first_line(e)) from e
    except psycopg.Error as e:
        raise Refused(first_line(e)) from e


def query(
    dsn: str,
    statement: str,
    params: Params = (),
    *,
    timeout_s: float,
    password_env: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of one read, in a read-only transaction of its own."""
    with connect(dsn, timeout_s=timeout_s, password_env=password_env) as conn:
        return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]


def write(
    dsn: str,
    statement: str,
    params: Params = (),
    *,
    timeout_s: float,
    password_env: str | None = None,
) -> list[dict[str, Any]]:
    """One write statement in its own transaction (mitigations only); the rows it RETURNs."""
    with connect(dsn, timeout_s=timeout_s, password_env=password_env, read_only=False) as conn:
        cur = conn.execute(statement, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []
