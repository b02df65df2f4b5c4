"""The only module of irlib.http that imports httpx. Bearer tokens are read from the
environment variable the profile names, at call time, and never returned or logged."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: Any  # parsed JSON when the server sent JSON, else text (truncated)
    elapsed_s: float


class Unreachable(Exception):
    """Nothing answered: connection refused, DNS failure, reset."""


class TimedOut(Exception):
    """Something may be there, but it did not answer in time."""


class MissingToken(Exception):
    """The profile names a token variable that is not set."""


def bearer(token_env: str | None) -> dict[str, str]:
    if not token_env:
        return {}
    token = os.environ.get(token_env)
    if not token:
        raise MissingToken(f"environment variable {token_env} is not set")
    return {"Authorization": f"Bearer {token}"}


def request(
    method: str, url: str, *, timeout_s: float, token_env: str | None = None, json: Any = None
) -> Answer:
    headers = bearer(token_env)
    t0 = time.monotonic()
    try:
        resp = httpx.request(method, url, headers=headers, json=json, timeout=timeout_s)
    except httpx.TimeoutException as e:
        raise TimedOut(f"{method} {url}: no answer within {timeout_s:g} s") from e
    except httpx.TransportError as e:
        raise Unreachable(f"{method} {url}: {e or type(e).__name__}") from e
    elapsed = time.monotonic() - t0
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text[:2000]
    return Answer(resp.status_code, body, elapsed)
