"""The only module of irlib.platform that imports psycopg and httpx. Reads run in read-only
transactions under connect and statement timeouts; writes (mitigations only) ask for it.
The admin token is read from the environment variable the profile names, at call time."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

Error = psycopg.Error


class AdminRefused(Exception):
    """The admin API answered, but did not do it."""


def _connect(
    dsn: str, timeout_s: float, password_env: str | None, *, write: bool
) -> psycopg.Connection[dict[str, Any]]:
    kwargs: dict[str, Any] = {}
    if password_env and os.environ.get(password_env):
        kwargs["password"] = os.environ[password_env]
    options = f"-c statement_timeout={int(timeout_s * 1000)}"
    if not write:  # the server itself refuses a write from a read: belt and braces
        options += " -c default_transaction_read_only=on"
    return psycopg.connect(
        dsn,
        connect_timeout=max(1, int(timeout_s)),
        autocommit=True,
        row_factory=dict_row,
        application_name="irlib",
        options=options,
        **kwargs,
    )


def query(
    dsn: str,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    timeout_s: float,
    password_env: str | None = None,
) -> list[dict[str, Any]]:
    with _connect(dsn, timeout_s, password_env, write=False) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def write(
    dsn: str,
    sql: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    *,
    timeout_s: float,
    password_env: str | None = None,
) -> list[dict[str, Any]]:
    """One write statement in its own transaction; the rows it RETURNs."""
    with _connect(dsn, timeout_s, password_env, write=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def admin_post(url: str, *, token_env: str | None, timeout_s: float) -> dict[str, Any]:
    """POST to an admin endpoint with the admin bearer token; its JSON answer."""
    token = os.environ.get(token_env or "")
    if not token:
        raise AdminRefused(f"environment variable {token_env} is not set")
    try:
        resp = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s)
    except httpx.HTTPError as e:
        raise AdminRefused(f"POST {url}: {type(e).__name__}: {e}") from e
    if resp.status_code != 200:
        raise AdminRefused(f"POST {url}: HTTP {resp.status_code} {resp.text[:200]}")
    body = resp.json()
    return body if isinstance(body, dict) else {"answer": body}
