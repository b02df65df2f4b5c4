"""The emulated Kubernetes API as a Starlette app: URL routing (`/api/v1/...`,
`/apis/<group>/<version>/...`), discovery, and the lifespan that builds the cluster and runs
its controller. Every request passes the gate (gate.py: token, impersonation, RBAC) first.
Verbs are in rest.py, watches in watch.py, logs in podlogs.py, access reviews in reviews.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from irlib.lab.config import LabConfig
from irlib.lab.kube import openapi, podlogs, policy, resources
from irlib.lab.kube.cluster import CLUSTER_AGE
from irlib.lab.kube.controller import Controller
from irlib.lab.kube.gate import Gate
from irlib.lab.kube.patch import PatchError
from irlib.lab.kube.rbac import EscalationCheck
from irlib.lab.kube.requestinfo import User
from irlib.lab.kube.rest import PODS, Rest
from irlib.lab.kube.reviews import Reviews
from irlib.lab.kube.store import Store, StoreError
from irlib.lab.kube.watch import watch_response
from irlib.lab.kube.wire import (
    error_response,
    flag,
    json_response,
    not_found,
    status_response,
)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
SERVICEACCOUNTS = resources.resource("serviceaccounts")


class Api:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.store = Store()
        self.controller = Controller(self.store, config)
        self.gate = Gate(self.store, config)
        self.rest = Rest(self.store, self.controller.metrics, EscalationCheck(self.gate.authorizer))
        self.reviews = Reviews(self.store, self.gate.authorizer, self.gate.authenticator)

    async def handle(self, request: Request) -> Response:
        try:
            request.state.user = self.gate.admit(
                request.method, request.url.path, request.url.query, request.headers
            )
            return await self._route(request)
        except StoreError as exc:
            return error_response(exc)
        except PatchError as exc:
            return status_response(422, "Invalid", str(exc))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return status_response(400, "BadRequest", f"{type(exc).__name__}: {exc}")

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        head = parts[0] if parts else ""
        if head in ("healthz", "livez", "readyz"):
            return PlainTextResponse("ok")
        if head == "version":
            return json_response(resources.VERSION_INFO)
        if head == "openapi" and parts[1:2] == ["v3"]:
            # (no /openapi/v2: kubectl then relies on server-side field validation)
            doc = openapi.index() if len(parts) == 2 else openapi.lookup(parts[2:])
            if doc is not None:
                return json_response(doc)
        if head == "api":
            if len(parts) == 1:
                address = f"{self.config.host}:{request.url.port}"
                return json_response(resources.api_versions(address))
            return await self._resource(request, parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return json_response(resources.api_group_list())
            if len(parts) == 2:
                group = resources.api_group(parts[1])
                if group is None:
                    raise not_found()
                return json_response(group)
            return await self._resource(request, f"{parts[1]}/{parts[2]}", parts[3:])
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/readyz", "/version"]})
        raise not_found()

    async def _resource(self, request: Request, gv: str, rest: list[str]) -> Response:
        if not rest:
            listing = resources.api_resource_list(gv)
            if listing is None:
                raise not_found()
            return json_response(listing)
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and resources.lookup(gv, rest[2]):
            namespace, rest = rest[1], rest[2:]
        res = resources.lookup(gv, rest[0])
        if res is None or (namespace is not None and not res.namespaced):
            raise not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        method, api = request.method, self.rest
        if res.group in resources.REVIEW_GROUPS and name is None and method == "POST":
            user: User = request.state.user
            answer = self.reviews.answer(res, namespace, await api.body(request), user)
            return json_response(answer, 201)
        if not res.stored:
            return api.read_metrics(request, res, namespace, name)
        if name is None:
            if method == "GET" and flag(request, "watch"):
                return watch_response(self.store, request, res, api.query(request, namespace))
            if method == "GET":
                return api.list_objects(request, res, namespace)
            if method == "POST":
                return api.create(res, namespace, await api.body(request), request)
            if method == "DELETE":
                return api.delete_collection(request, res, namespace)
        elif sub is None:
            if method == "GET":
                return api.get_object(request, res, namespace, name)
            if method == "PUT":
                return api.replace(res, namespace, name, await api.body(request), request)
            if method == "PATCH":
                return api.patch(request, res, namespace, name, await api.body(request))
            if method == "DELETE":
                return api.delete(res, namespace, name)
        elif sub == "log" and res is PODS and method == "GET":
            return self._log(request, namespace or "", name)
        elif sub == "token" and res is SERVICEACCOUNTS and method == "POST" and namespace:
            return json_response(self.reviews.token(namespace, name, await api.body(request)), 201)
        elif sub == "scale" and sub in res.subresources:
            return await api.scale(request, res, namespace, name)
        elif sub == "status" and method in ("GET", "PUT", "PATCH"):
            return await api.status(request, res, namespace, name)
        return status_response(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _log(self, request: Request, namespace: str, name: str) -> Response:
        pod = self.store.require(PODS, namespace, name)
        uid = pod["metadata"]["uid"]

        def alive() -> bool:
            now = self.store.get(PODS, namespace, name)
            return now is not None and now["metadata"]["uid"] == uid

        return podlogs.serve(request, pod, self.config.pods_dir, alive)


def create_app(config: LabConfig) -> Starlette:
    api = Api(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.controller.bootstrap()
        policy.bootstrap(api.store, time.time() - CLUSTER_AGE)
        task = asyncio.create_task(api.controller.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app = Starlette(routes=[Route("/{path:path}", api.handle, methods=METHODS)], lifespan=lifespan)
    app.state.api = api
    return app
