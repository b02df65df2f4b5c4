"""The only module of irlib.calibration that imports httpx. A bearer token is read from the
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

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def error(self) -> str:
        """What the server said went wrong, in one line."""
        if isinstance(self.body, dict):
            return str(self.body.get("error") or self.body.get("message") or self.body)[:300]
        return str(self.body)[:300]

    @property
    def reason(self) -> str | None:
        """The server's reason code or cause, when it gave one."""
        return self.body.get("reason") if isinstance(self.body, dict) else None


class Unreachable(Exception):
    """Nothing answered: connection refused, DNS failure, reset."""


class TimedOut(Exception):
    """Something may be there, but it did not answer in time."""


class MissingToken(Exception):
    """The profile names a token variable that is not set."""


def request(
    method: str,
    url: str,
    *,
    timeout_s: float,
    params: dict[str, str] | None = None,
    token_env: str | None = None,
    json: Any = None,
) -> Answer:
    headers = {}
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise MissingToken(f"environment variable {token_env} is not set")
        headers["Authorization"] = f"Bearer {token}"
    t0 = time.monotonic()
    try:
        resp = httpx.request(
            method, url, params=params, headers=headers, json=json, timeout=timeout_s
        )
    except httpx.TimeoutException as e:
        raise TimedOut(f"{method} {url}: no answer within {timeout_s:g} s") from e
    except httpx.TransportError as e:
        raise Unreachable(f"{method} {url}: {e or type(e).__name__}") from e
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text[:2000]
    return Answer(resp.status_code, body, time.monotonic() - t0)
