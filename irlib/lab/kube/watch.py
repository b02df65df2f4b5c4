"""`?watch=true`: a stream of newline-delimited `{"type": ..., "object": ...}` events.

From `resourceVersion` N the stream replays the store's history after N (410 Expired when it
no longer reaches back); without one it starts with ADDED for what exists. Selectors apply
to each change, so objects entering or leaving the selection arrive as ADDED or DELETED.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from irlib.lab.kube import tables
from irlib.lab.kube.meta import Obj
from irlib.lab.kube.resources import Resource
from irlib.lab.kube.store import Query, Store, WatchEvent
from irlib.lab.kube.wire import JSON, bad_request, status_body, wants

MAX_SECONDS = 1800.0  # the apiserver ends a watch after --min-request-timeout (30 min)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def translate(event: WatchEvent, match: Callable[[Obj], bool]) -> tuple[str, Obj] | None:
    """A store event as a watcher with selectors sees it, or None when it does not."""
    now_in = match(event.obj)
    was_in = event.old is not None and match(event.old)
    if event.type == "ADDED":
        return ("ADDED", event.obj) if now_in else None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if (was_in or now_in) else None
    if now_in:
        return ("MODIFIED" if was_in else "ADDED", event.obj)
    return ("DELETED", event.obj) if was_in else None


class _Encoder:
    """Events as lines; with `Accept: ...as=Table`, each object as a one-row Table (column
    definitions in the first one only, as kubectl expects)."""

    def __init__(self, res: Resource, as_table: bool, include: str) -> None:
        self.res, self.as_table, self.include, self.first = res, as_table, include, True

    def __call__(self, kind: str, obj: Obj) -> bytes:
        if self.as_table and kind != "BOOKMARK":
            table = tables.table(
                self.res.kind, [obj], self.include, obj["metadata"].get("resourceVersion", "")
            )
            if not self.first:
                table["columnDefinitions"] = []
            self.first = False
            obj = table
        line = json.dumps({"type": kind, "object": obj}, separators=(",", ":"))
        return (line + "\n").encode()


def watch_response(store: Store, request: Request, res: Resource, query: Query) -> Response:
    params = request.query_params
    try:
        match = query.matcher()
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    timeout = min(float(params.get("timeoutSeconds") or MAX_SECONDS), MAX_SECONDS)
    rv = params.get("resourceVersion") or ""
    send_initial = params.get("sendInitialEvents") == "true"
    encode = _Encoder(res, wants(request, "Table"), params.get("includeObject", "Metadata"))
    initial: list[tuple[str, Obj]] = []
    if rv in ("", "0") or send_initial:
        initial = [("ADDED", o) for o in store.list(res, query)]
    else:
        history = store.events_since(res.key, int(rv))
        if history is None:
            oldest = store.history[0].rv
            gone = status_body(410, "Expired", f"too old resource version: {rv} ({oldest})")
            line = json.dumps({"type": "ERROR", "object": gone}) + "\n"
            return Response(line, 200, media_type=JSON)
        initial = [t for t in (translate(e, match) for e in history) if t]
    # Subscribed in the same step as the snapshot above: nothing can happen in between.
    queue = store.subscribe()
    start_rv = store.rv

    async def stream() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + timeout
        try:
            for kind, obj in initial:
                yield encode(kind, obj)
            if send_initial:
                mark = {
                    "kind": res.kind,
                    "apiVersion": res.group_version,
                    "metadata": {
                        "resourceVersion": str(start_rv),
                        "annotations": {INITIAL_EVENTS_END: "true"},
                    },
                }
                yield encode("BOOKMARK", mark)
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                if event.key == res.key and event.rv > start_rv:
                    typed = translate(event, match)
                    if typed:
                        yield encode(*typed)
        finally:
            store.unsubscribe(queue)

    return StreamingResponse(stream(), media_type=JSON)
