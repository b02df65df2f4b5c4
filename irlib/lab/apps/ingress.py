"""The ingress in front of the api-service pods, played by the API process itself.

Watches the lab's Kubernetes API (as its admin, over TLS: the client passed in trusts the
lab's CA, kube/access.py) for the service's Endpoints and serves each request "from"
one ready pod in turn, writing that pod's access log; with no ready pod it answers 503 like
nginx. It also measures every request for Prometheus.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from irlib.io import utcnow
from irlib.lab.apps._common import Json, iso
from irlib.lab.config import LabConfig
from irlib.lab.kube.access import admin_headers

log = logging.getLogger("irlib.lab.apps.ingress")

SERVICE = "api-service"
POLL_INTERVAL = 0.5
# Probes and scrapes reach a pod directly, not through the ingress.
DIRECT_PATHS = frozenset({"/livez", "/metrics"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0)


class RequestMetrics:
    """The latency histogram and request counter that the high-latency runbook queries."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "method", "status")
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            labels,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", labels, registry=self.registry
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.duration.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()


def ready_pods(endpoints: dict[str, Any]) -> list[str]:
    """Names of the ready pods in an Endpoints object (unready ones are notReadyAddresses)."""
    names = {
        (address.get("targetRef") or {}).get("name") or address.get("ip", "?")
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
    }
    return sorted(names)


class Upstream:
    """The pods the ingress may send a request to, as the Kubernetes API last said.

    Until the first answer the ingress serves without naming a pod; when the API cannot be
    reached it keeps the last list it had, as an ingress controller keeps its config.
    """

    def __init__(self, config: LabConfig, service: str = SERVICE) -> None:
        self.url = (
            f"{config.url('kubernetes')}/api/v1/namespaces/{config.namespace}/endpoints/{service}"
        )
        self.headers = admin_headers(config)
        self.pods: list[str] | None = None
        self._turn = itertools.count()

    def pick(self) -> tuple[bool, str | None]:
        """(whether anyone can serve, the pod that does, None before the first answer)."""
        if self.pods is None:
            return True, None
        if not self.pods:
            return False, None
        return True, self.pods[next(self._turn) % len(self.pods)]

    async def refresh(self, client: httpx.AsyncClient) -> None:
        try:
            resp = await client.get(self.url, headers=self.headers, timeout=1.0)
            if resp.status_code == 200:
                self.pods = ready_pods(resp.json())
        except (httpx.HTTPError, ValueError, TypeError, AttributeError):
            pass  # unreachable or a malformed answer: keep the last known list

    async def watch(self, client: httpx.AsyncClient) -> None:
        while True:
            await self.refresh(client)
            await asyncio.sleep(POLL_INTERVAL)


class PodLogs:
    """Append lines to `<pod>.log`; opened per line because the file may be renamed to
    `<pod>.previous.log` at any moment when the pod's container restarts."""

    def __init__(self, pods_dir: Path) -> None:
        self.dir = pods_dir

    def write(self, pod: str, level: str, message: str) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / f"{pod}.log", "a") as f:
                f.write(f"{iso(utcnow())} {level} {message}\n")
        except OSError as e:
            log.warning("cannot write the log of pod %s: %s", pod, e)


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", scope["path"]))
    return "unmatched"  # never the raw path: that would make a label per URL


class Ingress:
    """ASGI middleware: route to a ready pod (or 503), access-log it, and measure it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        upstream: Upstream,
        metrics: RequestMetrics,
        pod_logs: PodLogs,
        routes: Sequence[BaseRoute],
        delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.app = app
        self.delay = delay  # extra seconds per request (the lab's cpu-saturation fault)
        self.upstream = upstream
        self.metrics = metrics
        self.pod_logs = pod_logs
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        pod: str | None = None
        try:
            if scope["path"] in DIRECT_PATHS:
                await self.app(scope, receive, send_status)
                return
            available, pod = self.upstream.pick()
            if not available:
                no_upstream = Json({"error": "no healthy upstream"}, status_code=503)
                await no_upstream(scope, receive, send_status)
                return
            if pod is not None:
                write: Callable[[str, str], None] = partial(self.pod_logs.write, pod)
                scope.setdefault("state", {})["pod_log"] = write
            if (extra := self.delay()) > 0:
                await asyncio.sleep(extra)
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, pod, status, time.perf_counter() - start)

    def _record(self, scope: Scope, pod: str | None, status: int, seconds: float) -> None:
        route = route_template(self.routes, scope)
        if route != "/metrics":
            self.metrics.observe(route, scope["method"], status, seconds)
        if pod is not None:
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            level = "ERROR" if status >= 500 else "INFO"
            self.pod_logs.write(
                pod, level, f"{scope['method']} {target} {status} {seconds * 1000:.1f}ms"
            )
