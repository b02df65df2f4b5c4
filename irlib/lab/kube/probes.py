"""Readiness probes that look at the lab's real processes: a TCP connect or an HTTP GET.

The controller runs every probe of the table in cluster.py concurrently each tick, with
Kubernetes' default timeout and failure threshold, so a pod is ready exactly when the process
behind it answers, and one slow answer on a busy machine is no outage (as on a real kubelet).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT = 1.0  # Kubernetes' default timeoutSeconds
FAILURE_THRESHOLD = 3  # Kubernetes' default failureThreshold: failures in a row that unready a pod
# failure causes, turned into kubelet-style messages by `message`
REFUSED = "refused"
TIMED_OUT = "timeout"
STATUS = "status:"


@dataclass(frozen=True)
class Probe:
    """`tcp` connects to host:port; `http` wants a 2xx/3xx from url."""

    kind: str
    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""

    def describe(self) -> str:
        return self.url if self.kind == "http" else f"{self.host}:{self.port}"


def tcp(host: str, port: int) -> Probe:
    return Probe("tcp", host=host, port=port)


def http(url: str) -> Probe:
    return Probe("http", url=url)


async def _tcp_ok(probe: Probe) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(probe.host, probe.port), TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return False, _reason(exc)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return TIMED_OUT
    return REFUSED


async def _http_ok(probe: Probe, client: httpx.AsyncClient) -> tuple[bool, str]:
    try:
        resp = await client.get(probe.url, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return False, _reason(exc)
    if 200 <= resp.status_code < 400:
        return True, ""
    return False, f"{STATUS}{resp.status_code}"


async def run_all(
    probes: dict[str, Probe], client: httpx.AsyncClient
) -> dict[str, tuple[bool, str]]:
    """Each probe's (ok, failure cause), keyed as the table is."""

    async def one(probe: Probe) -> tuple[bool, str]:
        if probe.kind == "http":
            return await _http_ok(probe, client)
        return await _tcp_ok(probe)

    names = list(probes)
    results = await asyncio.gather(*(one(probes[n]) for n in names))
    return dict(zip(names, results, strict=True))


class Streaks:
    """Each probe's result as a kubelet acts on it: failed once it has failed
    FAILURE_THRESHOLD times in a row, or at once if it never succeeded (a container is not
    ready until its first success); the cause is the latest failure's."""

    def __init__(self) -> None:
        self._failures: dict[str, int] = {}

    def update(self, raw: dict[str, tuple[bool, str]]) -> dict[str, tuple[bool, str]]:
        acted: dict[str, tuple[bool, str]] = {}
        for name, (ok, cause) in raw.items():
            failures = 0 if ok else self._failures.get(name, FAILURE_THRESHOLD - 1) + 1
            self._failures[name] = failures
            acted[name] = (True, "") if failures < FAILURE_THRESHOLD else (False, cause)
        return acted


def message(cause: str, spec: dict[str, Any], pod_ip: str) -> str:
    """What a kubelet reports for a failed readiness probe of a container with `spec`."""
    if "httpGet" in spec:
        get = spec["httpGet"]
        address = f"{pod_ip}:{get.get('port')}"
        url = f"{get.get('scheme', 'HTTP').lower()}://{address}{get.get('path', '/')}"
        if cause.startswith(STATUS):
            return f"HTTP probe failed with statuscode: {cause[len(STATUS) :]}"
        if cause == TIMED_OUT:
            return (
                f'Get "{url}": context deadline exceeded '
                "(Client.Timeout exceeded while awaiting headers)"
            )
        return f'Get "{url}": dial tcp {address}: connect: connection refused'
    if "tcpSocket" in spec:
        address = f"{pod_ip}:{spec['tcpSocket'].get('port')}"
        if cause == TIMED_OUT:
            return f"dial tcp {address}: i/o timeout"
        return f"dial tcp {address}: connect: connection refused"
    return "command failed: exit status 1" if cause != TIMED_OUT else "command timed out"
