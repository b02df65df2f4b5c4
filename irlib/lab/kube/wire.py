"""How the emulator answers on the wire: JSON bodies, `Status` errors, content negotiation.

Shared by the HTTP modules (server.py, rest.py, watch.py, podlogs.py); no state.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from irlib.lab.kube.store import StoreError

JSON = "application/json"
TRUE = ("true", "1", "True")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status, media_type=JSON)


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def status_response(code: int, reason: str, message: str, details: dict | None = None) -> Response:
    return json_response(status_body(code, reason, message, details), code)


def error_response(exc: StoreError) -> Response:
    return status_response(exc.code, exc.reason, exc.message, exc.details)


def bad_request(message: str) -> StoreError:
    return StoreError(400, "BadRequest", message)


def not_found() -> StoreError:
    return StoreError(404, "NotFound", "the server could not find the requested resource")


def wants(request: Request, kind: str) -> bool:
    """Whether the Accept header asks for `as=<kind>` (Table, PartialObjectMetadata...)."""
    return any(f"as={kind}" in part for part in request.headers.get("accept", "").split(","))


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name) in TRUE
