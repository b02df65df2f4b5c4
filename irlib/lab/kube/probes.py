"""Readiness probes that look at the lab's real processes: a TCP connect or an HTTP GET.

The controller runs every probe of the table in cluster.py concurrently each tick, with a
short timeout, so a pod is ready exactly when the process behind it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import httpx

TIMEOUT = 0.4


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
        return False, f"dial tcp {probe.host}:{probe.port}: connect: {_reason(exc)}"
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True, ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    return str(exc) or type(exc).__name__


async def _http_ok(probe: Probe, client: httpx.AsyncClient) -> tuple[bool, str]:
    try:
        resp = await client.get(probe.url, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        cause = exc.__cause__ or exc
        return False, f'Get "{probe.url}": dial tcp: connect: {_reason(cause)}'
    if 200 <= resp.status_code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status_code}"


async def run_all(
    probes: dict[str, Probe], client: httpx.AsyncClient
) -> dict[str, tuple[bool, str]]:
    """Each probe's (ok, failure message), keyed as the table is."""

    async def one(probe: Probe) -> tuple[bool, str]:
        if probe.kind == "http":
            return await _http_ok(probe, client)
        return await _tcp_ok(probe)

    names = list(probes)
    results = await asyncio.gather(*(one(probes[n]) for n in names))
    return dict(zip(names, results, strict=True))
