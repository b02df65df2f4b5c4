"""The api-service's `/v1/calibration/*` routes: the ingress sends them on to the
calibration-service (its own process and pods), as a path rule of the production ingress does.

With no ready calibration-service pod it answers 503 "no healthy upstream", like nginx; the
fits themselves run in the calibration-service, never in the API's event loop.
"""

from __future__ import annotations

import time

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irlib.lab.apps._common import Json, error, log_request_error, short_reason
from irlib.lab.apps.ingress import Upstream
from irlib.lab.config import LabConfig

SERVICE = "calibration-service"
PART = "calibration_service"
REFRESH_S = 0.5  # how old the list of ready pods may be
TIMEOUT_S = 60.0  # a forced recalibration fits before it answers
FORWARDED = ("authorization", "content-type", "accept")


class CalibrationUpstream:
    """The calibration-service's ready pods, refreshed when a request needs them."""

    def __init__(self, config: LabConfig) -> None:
        self.pods = Upstream(config, service=SERVICE)
        self.url = config.url(PART)
        self.checked = 0.0

    async def available(self, client: httpx.AsyncClient) -> bool:
        if time.monotonic() - self.checked > REFRESH_S:
            await self.pods.refresh(client)
            self.checked = time.monotonic()
        return self.pods.pick()[0]


def _upstream(request: Request) -> CalibrationUpstream:
    state = request.app.state
    if getattr(state, "calibration_upstream", None) is None:
        state.calibration_upstream = CalibrationUpstream(state.config)
    return state.calibration_upstream  # type: ignore[no-any-return]


async def forward(request: Request) -> Response:
    upstream = _upstream(request)
    client: httpx.AsyncClient = request.app.state.http
    if not await upstream.available(client):
        log_request_error(request, f"no ready {SERVICE} pod: no healthy upstream")
        return Json({"error": "no healthy upstream", "service": SERVICE}, status_code=503)
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
    try:
        resp = await client.request(
            request.method,
            upstream.url + request.url.path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as e:
        reason = short_reason(e)
        log_request_error(request, f"{SERVICE} unreachable: {reason}")
        return error(503, f"{SERVICE} unavailable", reason=reason)
    if resp.status_code >= 500:
        log_request_error(request, f"{SERVICE} answered {resp.status_code}")
    return Response(
        resp.content,
        status_code=resp.status_code,
        media_type=resp.headers.get("content-type", "application/json"),
    )


def routes() -> list[Route]:
    methods = ["GET", "POST"]
    return [
        Route("/v1/calibration/status", forward),
        Route("/v1/calibration/heston", forward, methods=methods),
        Route("/v1/calibration/config", forward),
        Route("/v1/calibration/test", forward),
        Route("/v1/calibration/surface", forward),
    ]
