"""The only module of irlib.broker that imports httpx. The bearer token is read from the
environment variable the profile names, at call time, and never returned or logged.
Connections are kept and reused: a reconciliation asks for every account's positions."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


class Unreachable(Exception):
    """Nothing answered: connection refused, DNS failure, reset."""


class TimedOut(Exception):
    """Something may be there, but it did not answer in time."""


class MissingToken(Exception):
    """The profile names a token variable that is not set."""


class Refused(Exception):
    """The broker answered, but not with what was asked (401, 5xx ...)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: Any  # parsed JSON when the broker sent JSON, else text (truncated)
    elapsed_s: float


class Broker:
    """The broker's API: one connection pool, shared by the threads that ask it."""

    def __init__(self, url: str, token_env: str | None, timeout_s: float) -> None:
        self.url, self.token_env, self.timeout_s = url, token_env, timeout_s
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=self.timeout_s, limits=httpx.Limits(max_connections=16)
                )
            return self._http

    def _headers(self) -> dict[str, str]:
        if not self.token_env:
            return {}
        token = os.environ.get(self.token_env)
        if not token:
            raise MissingToken(f"environment variable {self.token_env} is not set")
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, params: dict[str, Any] | None = None, *, auth: bool = True) -> Answer:
        headers = self._headers() if auth else {}
        url = self.url.rstrip("/") + path
        t0 = time.monotonic()
        try:
            resp = self.http.get(url, params=params, headers=headers)
        except httpx.TimeoutException as e:
            raise TimedOut(f"GET {path}: no answer within {self.timeout_s:g} s") from e
        except httpx.TransportError as e:
            raise Unreachable(f"GET {path}: {e or type(e).__name__}") from e
        elapsed = time.monotonic() - t0
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text[:2000]
        return Answer(resp.status_code, body, elapsed)

    def get_ok(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """The JSON body of a 200 answer; Refused for any other status."""
        answer = self.get(path, params)
        if answer.status_code != 200:
            detail = answer.body.get("error") if isinstance(answer.body, dict) else answer.body
            raise Refused(answer.status_code, f"GET {path}: HTTP {answer.status_code} ({detail})")
        return answer.body
