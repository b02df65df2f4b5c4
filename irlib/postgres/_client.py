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

from irlib import capture
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
    if not capture.active():
        conn = _open(dsn, timeout_s, password_env, autocommit, read_only)
    else:  # the connection's outcome is an answer too (a replay opens none)
        opened: list[Connection] = []

        def open_() -> bool:
            opened.append(_open(dsn, timeout_s, password_env, autocommit, read_only))
            return True

        capture.call("postgres", {"connect": dsn, "read_only": read_only}, open_)
        conn = opened[0] if opened else None  # type: ignore[assignment]
    try:
        if conn is None:
            yield _Captured(None, dsn)  # type: ignore[misc]
        else:
            with conn:
                yield _Captured(conn, dsn) if capture.active() else conn  # type: ignore[misc]
    except errors.QueryCanceled as e:
        raise TimedOut(f"no answer within {timeout_s:g} s: {first_line(e)}") from e
    except psycopg.OperationalError as e:  # the server went away under us
        raise Unreachable(first_line(e)) from e
    except psycopg.Error as e:
        raise Refused(first_line(e)) from e


class _Rows:
    """What a statement answered, read whole: rows, row count, whether it returned rows."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._rows: list[dict[str, Any]] = list(data["rows"])
        self.rowcount: int = data["rowcount"]
        self.description = data["columns"]  # None when the statement returns no rows

    def fetchall(self) -> list[dict[str, Any]]:
        return self._rows

    def fetchone(self) -> dict[str, Any] | None:
        return self._rows[0] if self._rows else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows)


class _Captured:
    """A connection whose statements are captured (irlib.capture): each answer read whole
    when it is executed. In a replay there is no connection under it at all."""

    def __init__(self, conn: Connection | None, dsn: str) -> None:
        self._conn = conn
        self._dsn = dsn

    # What psycopg's `Composable.as_string(conn)` reads of a connection (a mitigation composes
    # its statement with it); in a replay, psycopg's global adapters.
    @property
    def connection(self) -> Connection | None:
        return self._conn

    @property
    def adapters(self) -> Any:
        return self._conn.adapters if self._conn is not None else psycopg.adapters

    def execute(self, statement: Any, params: Params = ()) -> _Rows:
        text = (
            statement.as_string(self._conn) if isinstance(statement, sql.Composable) else statement
        )
        call = {"dsn": self._dsn, "statement": str(text), "params": params}
        return _Rows(capture.call("postgres", call, lambda: self._read(statement, params)))

    def _read(self, statement: Any, params: Params) -> dict[str, Any]:
        if self._conn is None:
            raise Unreachable("no database connection in a replay")
        cur = self._conn.execute(statement, params)
        columns = [c.name for c in cur.description] if cur.description else None
        return {
            "rows": cur.fetchall() if columns else [],
            "rowcount": cur.rowcount,
            "columns": columns,
        }


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
