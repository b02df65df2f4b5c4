"""The one HTTP transport of irlib's targets (the trading API and its platform endpoints, the
broker, market data, the calibration service, Prometheus, a chat webhook): the only module
that imports httpx.

Every request has a timeout. A bearer token is read from the environment variable the profile
names, at call time, and never returned, logged or put in an error. Failures are the target
errors of irlib.errors: Unreachable, TimedOut, MissingToken, and Refused from `get_ok`.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from irlib import capture
from irlib.errors import MissingToken, Refused, TimedOut, Unreachable

BODY_CHARS = 2000  # a text (non-JSON) answer is kept up to this many characters


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


def secret(env_name: str | None) -> str | None:
    """The value of the environment variable a profile names for a password, or None."""
    if not env_name:
        return None
    return os.environ.get(env_name) or None


def bearer(token_env: str | None) -> dict[str, str]:
    """The Authorization header for the token in `token_env`; none when no variable is named,
    MissingToken when it is named but not set."""
    if not token_env:
        return {}
    token = os.environ.get(token_env)
    if not token:
        raise MissingToken(token_env)
    return {"Authorization": f"Bearer {token}"}


@functools.cache
def _tls() -> ssl.SSLContext:
    """The verifying TLS context all clients share: httpx builds one for each client it makes
    (the CA bundle read and parsed, 20-30 ms), the same from the same environment."""
    return httpx.create_ssl_context()


class Http:
    """One target's HTTP API: its base URL, timeout and token variable. Requests share one
    connection pool, safely across threads (a reconciliation asks for every account at once)."""

    def __init__(
        self, base_url: str = "", *, timeout_s: float, token_env: str | None = None
    ) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.token_env = token_env
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _pool(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self.timeout_s, limits=httpx.Limits(max_connections=16), verify=_tls()
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def request(
        self,
        method: str,
        path: str = "",
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        auth: bool = True,
    ) -> Answer:
        """`method` on base URL + `path`, whatever the status; the token only when `auth`.
        Captured (irlib.capture): the answer, never the token."""
        url = self.base_url.rstrip("/") + path if path else self.base_url

        def read() -> dict[str, Any]:
            headers = bearer(self.token_env) if auth else {}
            t0 = time.monotonic()
            try:
                resp = self._pool().request(method, url, params=params, json=json, headers=headers)
            except httpx.TimeoutException as e:
                raise TimedOut(f"{method} {url}: no answer within {self.timeout_s:g} s") from e
            except httpx.TransportError as e:
                raise Unreachable(f"unreachable: {method} {url}: {e or type(e).__name__}") from e
            elapsed = time.monotonic() - t0
            try:
                body: Any = resp.json()
            except ValueError:
                body = resp.text[:BODY_CHARS]
            return {"status_code": resp.status_code, "body": body, "elapsed_s": elapsed}

        call = {"method": method, "url": url, "params": params, "json": json}
        return Answer(**capture.call("http", call, read))

    def get(
        self, path: str = "", params: dict[str, Any] | None = None, *, auth: bool = True
    ) -> Answer:
        return self.request("GET", path, params=params, auth=auth)

    def get_ok(self, path: str = "", params: dict[str, Any] | None = None) -> Any:
        """The JSON body of a 2xx answer; Refused (with the status) for any other."""
        answer = self.get(path, params)
        if not answer.ok:
            raise Refused(
                f"GET {path or self.base_url}: HTTP {answer.status_code} ({answer.error})",
                answer.status_code,
            )
        return answer.body


def request(
    method: str,
    url: str,
    *,
    timeout_s: float,
    token_env: str | None = None,
    params: dict[str, Any] | None = None,
    json: Any = None,
) -> Answer:
    """One request to a full URL, on a connection of its own (checks that ask once)."""
    http = Http(url, timeout_s=timeout_s, token_env=token_env)
    try:
        return http.request(method, params=params, json=json)
    finally:
        http.close()
