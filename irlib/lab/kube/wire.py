"""How the emulator answers on the wire: JSON bodies, `Status` errors, content negotiation.

Shared by the HTTP modules (server.py, rest.py, watch.py, podlogs.py). The one state is
`Encoded`, the stored objects' JSON texts that rest.py keeps for lists and gets.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from irlib.lab.kube.store import StoreError

JSON = "application/json"
TRUE = ("true", "1", "True")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status, media_type=JSON)


class Encoded:
    """Each stored object's JSON, encoded once per resourceVersion and kept, as the
    apiserver's watch cache keeps serialized objects: a page of 500 of 20,000 events is then
    a join of kept texts, not 500 encodings (which took most of the emulator's time for a
    list at a real platform's size). The store replaces an object on every write and never
    changes a stored one in place, so (uid, resourceVersion) names one text; one text is kept
    per uid, the latest served, so what is kept is about one text per object."""

    def __init__(self, keep: int = 100_000) -> None:
        self.keep = keep  # uids kept at most (deleted objects' too, until they are the oldest)
        self._texts: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def text(self, obj: Any) -> str:
        meta = obj.get("metadata") or {}
        uid, rv = meta.get("uid"), meta.get("resourceVersion")
        kept = self._texts.get(uid) if uid else None
        if kept is not None and kept[0] == rv:
            return kept[1]
        text = json.dumps(obj, separators=(",", ":"))
        if uid and rv:  # a stored object (what the server makes up per request has neither)
            self._texts[uid] = (rv, text)
            self._texts.move_to_end(uid)
            if len(self._texts) > self.keep:
                self._texts.popitem(last=False)
        return text

    def list_response(self, head: dict[str, Any], items: list[Any]) -> Response:
        """`head` (kind, apiVersion, metadata) with `"items"` the kept texts of `items`."""
        start = json.dumps(head, separators=(",", ":"))[:-1]
        body = f'{start},"items":[{",".join(self.text(o) for o in items)}]}}'
        return Response(body, 200, media_type=JSON)

    def response(self, obj: Any) -> Response:
        return Response(self.text(obj), 200, media_type=JSON)


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
