"""The Kubernetes REST API over HTTP (a Starlette app): discovery, CRUD, patch, watch,
server-side tables, pod logs, the scale and status subresources, and metrics.k8s.io.

Wire details follow kube-apiserver where kubectl or the Python client depend on them: list
kinds, `Status` errors, `Table` answers for `Accept: ...;as=Table`, newline-delimited watch
events, text/plain logs. Objects live in store.py; the controller acts on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from irlib.lab.config import LabConfig
from irlib.lab.kube import defaults, podlogs, resources, tables
from irlib.lab.kube.controller import Controller
from irlib.lab.kube.meta import Obj, rfc3339
from irlib.lab.kube.patch import PatchError, apply_patch
from irlib.lab.kube.resources import Resource
from irlib.lab.kube.selectors import selector_string
from irlib.lab.kube.store import Query, Store, StoreError, WatchEvent

JSON = "application/json"
MAX_WATCH = 1800.0
NAMESPACES = resources.resource("namespaces")
PODS = resources.resource("pods")
SCALABLE = {"Deployment", "ReplicaSet", "StatefulSet"}


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status, media_type=JSON)


def status_response(code: int, reason: str, message: str, details: dict | None = None) -> Response:
    body: Obj = {
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
    return _json(body, code)


def _error(exc: StoreError) -> Response:
    return status_response(exc.code, exc.reason, exc.message, exc.details)


def _bad_request(message: str) -> StoreError:
    return StoreError(400, "BadRequest", message)


def _wants(request: Request, kind: str) -> bool:
    return any(f"as={kind}" in part for part in request.headers.get("accept", "").split(","))


class Api:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.store = Store()
        self.controller = Controller(self.store, config)

    # -- routing ----------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except StoreError as exc:
            return _error(exc)
        except PatchError as exc:
            return status_response(422, "Invalid", str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return status_response(400, "BadRequest", f"{type(exc).__name__}: {exc}")

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if not parts:
            return _json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/version"]})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return PlainTextResponse("ok")
        if head == "version":
            return _json(resources.VERSION_INFO)
        if head == "api":
            if len(parts) == 1:
                return _json(resources.api_versions(f"{self.config.host}:{request.url.port}"))
            return await self._group_version(request, parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return _json(resources.api_group_list())
            if len(parts) == 2:
                group = resources.api_group(parts[1])
                if group is None:
                    raise StoreError(
                        404, "NotFound", "the server could not find the requested resource"
                    )
                return _json(group)
            return await self._group_version(request, f"{parts[1]}/{parts[2]}", parts[3:])
        raise StoreError(404, "NotFound", "the server could not find the requested resource")

    async def _group_version(self, request: Request, gv: str, rest: list[str]) -> Response:
        if not rest:
            listing = resources.api_resource_list(gv)
            if listing is None:
                raise StoreError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            return _json(listing)
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and resources.lookup(gv, rest[2]):
            namespace, rest = rest[1], rest[2:]
        res = resources.lookup(gv, rest[0])
        if res is None:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not res.namespaced:
            raise StoreError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        method = request.method
        if not res.stored:
            return self._metrics(request, res, namespace, name)
        if name is None:
            if method == "GET":
                if request.query_params.get("watch") in ("1", "true", "True"):
                    return self._watch(request, res, namespace)
                return self._list(request, res, namespace)
            if method == "POST":
                return self._create(res, namespace, await self._body(request), request)
            if method == "DELETE":
                return self._delete_collection(request, res, namespace)
        elif sub is None:
            if method == "GET":
                return self._get(request, res, namespace, name)
            if method == "PUT":
                return self._replace(res, namespace, name, await self._body(request), request)
            if method == "PATCH":
                body = await self._body(request)
                return self._patch(request, res, namespace, name, body)
            if method == "DELETE":
                return self._delete(res, namespace, name)
        elif sub == "log" and res is PODS and method == "GET":
            return self._log(request, namespace, name)
        elif sub == "scale" and "scale" in res.subresources:
            return await self._scale(request, res, namespace, name)
        elif sub == "status" and method in ("GET", "PUT", "PATCH"):
            return await self._status(request, res, namespace, name)
        return status_response(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    @staticmethod
    async def _body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            raise _bad_request("the body of the request was empty")
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            import yaml

            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise _bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _query(self, request: Request, namespace: str | None) -> Query:
        return Query(
            namespace=namespace,
            label_selector=request.query_params.get("labelSelector"),
            field_selector=request.query_params.get("fieldSelector"),
        )

    def _need_namespace(self, res: Resource, namespace: str | None) -> None:
        if res.namespaced and namespace and self.store.get(NAMESPACES, None, namespace) is None:
            raise StoreError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )

    # -- reads ------------------------------------------------------------------------

    def _render(self, request: Request, res: Resource, items: list[Obj], single: bool) -> Response:
        rv = str(self.store.rv)
        if _wants(request, "Table"):
            include = request.query_params.get("includeObject", "Metadata")
            return _json(tables.table(res.kind, items, include, rv))
        if _wants(request, "PartialObjectMetadataList") or _wants(request, "PartialObjectMetadata"):
            partial = [
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }
                for o in items
            ]
            if single:
                return _json(partial[0])
            return _json(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": rv},
                    "items": partial,
                }
            )
        if single:
            return _json(items[0])
        return _json(
            {
                "kind": res.list_kind,
                "apiVersion": res.group_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    def _list(self, request: Request, res: Resource, namespace: str | None) -> Response:
        self._need_namespace(res, namespace)
        try:
            items = self.store.list(res, self._query(request, namespace))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return self._render(request, res, items, single=False)

    def _get(self, request: Request, res: Resource, namespace: str | None, name: str) -> Response:
        obj = self.store.require(res, namespace, name)
        return self._render(request, res, [obj], single=True)

    # -- writes -----------------------------------------------------------------------

    @staticmethod
    def _dry_run(request: Request) -> bool:
        return bool(request.query_params.getlist("dryRun"))

    def _prepare(self, res: Resource, obj: Obj, namespace: str | None, old: Obj | None) -> Obj:
        if not isinstance(obj, dict):
            raise _bad_request("the object must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if namespace and meta.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        if res.kind in SCALABLE | {"Pod"}:
            spec = obj.get("spec") or {}
            pod_spec = spec if res.kind == "Pod" else (spec.get("template") or {}).get("spec") or {}
            if not pod_spec.get("containers"):
                prefix = "spec" if res.kind == "Pod" else "spec.template.spec"
                raise StoreError(
                    422,
                    "Invalid",
                    f'{res.kind} "{meta.get("name", "")}" is invalid: {prefix}.containers: '
                    "Required value",
                )
        if old is not None and res.has_status:
            obj["status"] = copy.deepcopy(old.get("status"))  # the main resource ignores status
            if obj["status"] is None:
                obj.pop("status")
        if old is not None:
            for key in ("uid", "creationTimestamp"):
                meta[key] = old["metadata"][key]
            if res is PODS:  # a pod's spec is mostly immutable; keep what the cluster set
                obj["spec"].setdefault("nodeName", old["spec"].get("nodeName"))
        return defaults.apply_defaults(res.kind, obj)

    def _create(
        self, res: Resource, namespace: str | None, body: Any, request: Request
    ) -> Response:
        self._need_namespace(res, namespace)
        if res.kind in SCALABLE | {"Pod"} and isinstance(body, dict):
            body.pop("status", None)
        obj = self._prepare(res, body, namespace, None)
        if self._dry_run(request):
            return _json(obj, 201)
        return _json(self.store.create(res, obj), 201)

    def _check_version(self, res: Resource, obj: Obj, current: Obj) -> None:
        want = obj.get("metadata", {}).get("resourceVersion")
        if want and want != current["metadata"]["resourceVersion"]:
            raise StoreError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {res.qualified()} "
                f'"{current["metadata"]["name"]}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
                {"name": current["metadata"]["name"], "kind": res.plural, "group": res.group},
            )

    def _replace(
        self, res: Resource, namespace: str | None, name: str, body: Any, request: Request
    ) -> Response:
        current = self.store.require(res, namespace, name)
        self._check_version(res, body, current)
        if body.get("metadata", {}).get("name", name) != name:
            raise _bad_request("the name of the object does not match the name on the URL")
        body.setdefault("metadata", {})["name"] = name
        obj = self._prepare(res, body, namespace, current)
        if self._dry_run(request):
            return _json(obj)
        return _json(self.store.update(res, obj))

    def _patched(self, request: Request, current: Obj, body: Any) -> Obj:
        content_type = request.headers.get("content-type", "")
        if "apply-patch" in content_type:
            # server-side apply is treated as a merge of the applied fields
            content_type = "application/merge-patch+json"
        return apply_patch(content_type, copy.deepcopy(current), body)

    def _patch(
        self, request: Request, res: Resource, namespace: str | None, name: str, body: Any
    ) -> Response:
        current = self.store.require(res, namespace, name)
        obj = self._patched(request, current, body)
        if not isinstance(obj, dict):
            raise _bad_request("the patch did not produce an object")
        self._check_version(res, obj, current)
        obj.setdefault("metadata", {})["name"] = name
        obj = self._prepare(res, obj, namespace, current)
        if self._dry_run(request):
            return _json(obj)
        return _json(self.store.update(res, obj))

    def _delete(self, res: Resource, namespace: str | None, name: str) -> Response:
        gone = self.store.delete(res, namespace, name)
        if res is PODS:
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return _json(gone)
        details = {"name": name, "kind": res.plural, "uid": gone["metadata"]["uid"]}
        if res.group:
            details["group"] = res.group
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )

    def _delete_collection(
        self, request: Request, res: Resource, namespace: str | None
    ) -> Response:
        items = self.store.list(res, self._query(request, namespace))
        for obj in items:
            self.store.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        return self._render(request, res, items, single=False)

    # -- subresources -----------------------------------------------------------------

    def _scale_of(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        scale_meta = {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        }
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": scale_meta,
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": selector_string(obj["spec"].get("selector")),
            },
        }

    async def _scale(
        self, request: Request, res: Resource, namespace: str | None, name: str
    ) -> Response:
        current = self.store.require(res, namespace, name)
        scale = self._scale_of(current)
        if request.method == "GET":
            return _json(scale)
        body = await self._body(request)
        if request.method == "PUT":
            new = body
        elif request.method == "PATCH":
            new = self._patched(request, scale, body)
        else:
            return status_response(405, "MethodNotAllowed", "method not allowed on scale")
        self._check_version(res, new, current)
        replicas = (new.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise StoreError(
                422,
                "Invalid",
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                "Invalid value: must be greater than or equal to 0",
            )
        obj = copy.deepcopy(current)
        obj["spec"]["replicas"] = replicas
        if not self._dry_run(request):
            obj = self.store.update(res, obj)
        return _json(self._scale_of(obj))

    async def _status(
        self, request: Request, res: Resource, namespace: str | None, name: str
    ) -> Response:
        current = self.store.require(res, namespace, name)
        if request.method == "GET":
            return _json(current)
        body = await self._body(request)
        new = body if request.method == "PUT" else self._patched(request, current, body)
        obj = copy.deepcopy(current)
        obj["status"] = new.get("status")
        if not self._dry_run(request):
            obj = self.store.update(res, obj)
        return _json(obj)

    def _log(self, request: Request, namespace: str | None, name: str) -> Response:
        pod = self.store.require(PODS, namespace, name)
        params = request.query_params
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        container = params.get("container")
        if container is None:
            if len(containers) != 1:
                raise _bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            raise _bad_request(f"container {container} is not valid for pod {name}")
        previous = params.get("previous") in ("true", "1", "True")
        file = podlogs.path(self.config.pods_dir, name, previous)
        if previous and not file.exists():
            raise _bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        if not previous and not file.exists():
            waiting = next(
                (
                    (s.get("state") or {}).get("waiting")
                    for s in pod.get("status", {}).get("containerStatuses") or []
                    if s["name"] == container
                ),
                None,
            )
            reason = (waiting or {}).get("reason", "ContainerCreating")
            raise _bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        since = podlogs.since_from(params.get("sinceSeconds"), params.get("sinceTime"))
        options = {
            "tail_lines": int(params["tailLines"]) if params.get("tailLines") else None,
            "since": since,
            "timestamps": params.get("timestamps") in ("true", "1", "True"),
            "limit_bytes": int(params["limitBytes"]) if params.get("limitBytes") else None,
        }
        text = podlogs.read(file, **options)
        if params.get("follow") not in ("true", "1", "True"):
            return PlainTextResponse(text)
        return StreamingResponse(
            self._follow(file, text, namespace or "", name, bool(options["timestamps"])),
            media_type="text/plain",
        )

    async def _follow(
        self, file: Any, first: str, namespace: str, name: str, timestamps: bool
    ) -> AsyncIterator[bytes]:
        yield first.encode()
        offset = file.stat().st_size if file.exists() else 0
        uid = self.store.require(PODS, namespace, name)["metadata"]["uid"]
        while True:
            await asyncio.sleep(0.5)
            pod = self.store.get(PODS, namespace, name)
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            try:
                size = file.stat().st_size
            except FileNotFoundError:
                continue
            if size < offset:
                offset = 0  # the container restarted: a new log
            if size > offset:
                with open(file, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(size - offset)
                offset = size
                yield podlogs.render(
                    chunk.decode(errors="replace"), time.time(), timestamps
                ).encode()

    # -- metrics.k8s.io ---------------------------------------------------------------

    def _metrics(
        self, request: Request, res: Resource, namespace: str | None, name: str | None
    ) -> Response:
        if request.method != "GET":
            return status_response(405, "MethodNotAllowed", "metrics are read-only")
        params = request.query_params
        metrics = self.controller.metrics
        if name is None:
            items = metrics.list(
                res.plural, namespace, params.get("labelSelector"), params.get("fieldSelector")
            )
            return _json(
                {
                    "kind": res.list_kind,
                    "apiVersion": res.group_version,
                    "metadata": {},
                    "items": items,
                }
            )
        if res.plural == "pods":
            pod = self.store.get(PODS, namespace, name)
            found = metrics.pod_metrics(pod) if pod else None
        else:
            node = self.store.get(resources.resource("nodes"), None, name)
            found = metrics.node_metrics(node) if node else None
        if found is None:
            raise StoreError(
                404,
                "NotFound",
                f'{res.plural}.metrics.k8s.io "{name}" not found',
                {"name": name, "group": "metrics.k8s.io", "kind": res.plural},
            )
        return _json(found)

    # -- watch ------------------------------------------------------------------------

    def _watch(self, request: Request, res: Resource, namespace: str | None) -> Response:
        params = request.query_params
        query = self._query(request, namespace)
        try:
            match = query.matcher()
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        timeout = min(float(params.get("timeoutSeconds") or MAX_WATCH), MAX_WATCH)
        as_table = _wants(request, "Table")
        include = params.get("includeObject", "Metadata")
        rv = params.get("resourceVersion") or ""
        queue = self.store.subscribe()
        start_rv = self.store.rv
        initial: list[tuple[str, Obj]] = []
        if rv in ("", "0") or params.get("sendInitialEvents") == "true":
            initial = [("ADDED", o) for o in self.store.list(res, query)]
        else:
            history = self.store.events_since(res.key, int(rv))
            if history is None:
                self.store.unsubscribe(queue)
                gone = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": f"too old resource version: {rv} ({self.store.history[0].rv})",
                    "reason": "Expired",
                    "code": 410,
                }
                line = json.dumps({"type": "ERROR", "object": gone}) + "\n"
                return Response(line, 200, media_type=JSON)
            for event in history:
                typed = _translate(event, match)
                if typed:
                    initial.append(typed)
        bookmark = params.get("sendInitialEvents") == "true"

        def encode(kind: str, obj: Obj, first: list[bool]) -> bytes:
            if as_table and kind != "BOOKMARK":
                t = tables.table(
                    res.kind, [obj], include, obj["metadata"].get("resourceVersion", "")
                )
                if not first[0]:
                    t["columnDefinitions"] = []
                first[0] = False
                obj = t
            return (
                json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            ).encode()

        async def stream() -> AsyncIterator[bytes]:
            first = [True]
            deadline = time.monotonic() + timeout
            try:
                for kind, obj in initial:
                    yield encode(kind, obj, first)
                if bookmark:
                    mark = {
                        "kind": res.kind,
                        "apiVersion": res.group_version,
                        "metadata": {
                            "resourceVersion": str(start_rv),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }
                    yield encode("BOOKMARK", mark, first)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        return
                    if event.key != res.key or event.rv <= start_rv:
                        continue
                    typed = _translate(event, match)
                    if typed:
                        yield encode(typed[0], typed[1], first)
            finally:
                self.store.unsubscribe(queue)

        return StreamingResponse(stream(), media_type=JSON)


def _translate(event: WatchEvent, match: Any) -> tuple[str, Obj] | None:
    """A store event as a watcher with selectors sees it (objects entering or leaving the
    selection appear as ADDED or DELETED)."""
    now_in = match(event.obj)
    was_in = event.old is not None and match(event.old)
    if event.type == "ADDED":
        return ("ADDED", event.obj) if now_in else None
    if event.type == "DELETED":
        return ("DELETED", event.obj) if (was_in or now_in) else None
    if now_in and was_in:
        return ("MODIFIED", event.obj)
    if now_in:
        return ("ADDED", event.obj)
    if was_in:
        return ("DELETED", event.obj)
    return None


def create_app(config: LabConfig) -> Starlette:
    api = Api(config)
    tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.controller.bootstrap()
        tasks.append(asyncio.create_task(api.controller.run()))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(routes=[Route("/{path:path}", api.handle, methods=methods)], lifespan=lifespan)
    app.state.api = api
    app.state.started = rfc3339()
    return app
