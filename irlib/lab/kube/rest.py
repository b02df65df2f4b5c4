"""The REST verbs of the emulated apiserver: list, get, create, replace, patch, delete,
the scale and status subresources, and metrics.k8s.io reads.

Writes pass the apiserver's rules that clients notice: defaults filled in, status kept out of
spec writes (and the reverse), resourceVersion preconditions, `dryRun`, namespaces existing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from irlib.lab.kube import defaults, protobuf, rbac, resources, tables
from irlib.lab.kube.meta import Obj
from irlib.lab.kube.metrics import Metrics
from irlib.lab.kube.paging import Page, Pager
from irlib.lab.kube.patch import apply_patch
from irlib.lab.kube.rbac import EscalationCheck
from irlib.lab.kube.resources import Resource
from irlib.lab.kube.selectors import selector_string
from irlib.lab.kube.store import Query, Store, StoreError
from irlib.lab.kube.wire import Encoded, bad_request, json_response, status_response, wants

NAMESPACES = resources.resource("namespaces")
NODES = resources.resource("nodes")
PODS = resources.resource("pods")
SCALABLE = {"Deployment", "ReplicaSet", "StatefulSet"}


class Rest:
    def __init__(self, store: Store, metrics: Metrics, escalation: EscalationCheck) -> None:
        self.store = store
        self.metrics = metrics
        self.escalation = escalation  # RBAC objects: nobody grants what they do not hold
        self.pager = Pager()
        self.encoded = Encoded()

    def query(self, request: Request, namespace: str | None) -> Query:
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

    def _render(
        self,
        request: Request,
        res: Resource,
        items: list[Obj],
        single: bool,
        page: Page | None = None,
    ) -> Response:
        rv = str(self.store.rv)
        list_meta: Obj = {"resourceVersion": rv}
        if page is not None and page.continue_token:
            list_meta["continue"] = page.continue_token
            if page.remaining is not None:
                list_meta["remainingItemCount"] = page.remaining
        if wants(request, "Table"):
            include = request.query_params.get("includeObject", "Metadata")
            table = tables.table(res.kind, items, include, rv)
            table["metadata"] = list_meta
            return json_response(table)
        if wants(request, "PartialObjectMetadataList") or wants(request, "PartialObjectMetadata"):
            partial = [
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                }
                for o in items
            ]
            if single:
                return json_response(partial[0])
            return json_response(
                {
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": list_meta,
                    "items": partial,
                }
            )
        if single:
            return self.encoded.response(items[0])
        return self.encoded.list_response(
            {"kind": res.list_kind, "apiVersion": res.group_version, "metadata": list_meta},
            items,
        )

    def list_objects(self, request: Request, res: Resource, namespace: str | None) -> Response:
        self._need_namespace(res, namespace)
        query = self.query(request, namespace)
        params = request.query_params
        try:
            limit = int(params.get("limit") or 0)
            if limit < 0:
                raise ValueError(f"limit must be a positive number, not {limit}")
            page = self.pager.page(
                f"{res.key}|{namespace}|{query.label_selector}|{query.field_selector}",
                self.store.rv,
                lambda: self.store.list(res, query),
                limit,
                params.get("continue"),
                filtered=bool(query.label_selector or query.field_selector),
            )
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return self._render(request, res, page.items, single=False, page=page)

    def get_object(
        self, request: Request, res: Resource, namespace: str | None, name: str
    ) -> Response:
        obj = self.store.require(res, namespace, name)
        return self._render(request, res, [obj], single=True)

    # -- writes -----------------------------------------------------------------------

    @staticmethod
    def _dry_run(request: Request) -> bool:
        return bool(request.query_params.getlist("dryRun"))

    def _prepare(
        self, request: Request, res: Resource, obj: Obj, namespace: str | None, old: Obj | None
    ) -> Obj:
        if not isinstance(obj, dict):
            raise bad_request("the object must be a JSON object")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            if namespace and meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
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
        rbac.validate(res.kind, obj, old)
        self.escalation(request.state.user, res.kind, obj)
        return defaults.apply_defaults(res.kind, obj)

    def create(self, res: Resource, namespace: str | None, body: Any, request: Request) -> Response:
        self._need_namespace(res, namespace)
        if res.kind in SCALABLE | {"Pod"} and isinstance(body, dict):
            body.pop("status", None)
        obj = self._prepare(request, res, body, namespace, None)
        if self._dry_run(request):
            return json_response(obj, 201)
        return json_response(self.store.create(res, obj), 201)

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

    def replace(
        self, res: Resource, namespace: str | None, name: str, body: Any, request: Request
    ) -> Response:
        current = self.store.require(res, namespace, name)
        self._check_version(res, body, current)
        if body.get("metadata", {}).get("name", name) != name:
            raise bad_request("the name of the object does not match the name on the URL")
        body.setdefault("metadata", {})["name"] = name
        obj = self._prepare(request, res, body, namespace, current)
        if self._dry_run(request):
            return json_response(obj)
        return json_response(self.store.update(res, obj))

    def _patched(self, request: Request, current: Obj, body: Any) -> Obj:
        content_type = request.headers.get("content-type", "")
        if "apply-patch" in content_type:
            # server-side apply is treated as a merge of the applied fields
            content_type = "application/merge-patch+json"
        return apply_patch(content_type, copy.deepcopy(current), body)

    def patch(
        self, request: Request, res: Resource, namespace: str | None, name: str, body: Any
    ) -> Response:
        current = self.store.require(res, namespace, name)
        obj = self._patched(request, current, body)
        if not isinstance(obj, dict):
            raise bad_request("the patch did not produce an object")
        self._check_version(res, obj, current)
        obj.setdefault("metadata", {})["name"] = name
        obj = self._prepare(request, res, obj, namespace, current)
        if self._dry_run(request):
            return json_response(obj)
        return json_response(self.store.update(res, obj))

    def delete(self, res: Resource, namespace: str | None, name: str) -> Response:
        gone = self.store.delete(res, namespace, name)
        if res is PODS:
            gone["metadata"]["deletionGracePeriodSeconds"] = 0
            return json_response(gone)
        details = {"name": name, "kind": res.plural, "uid": gone["metadata"]["uid"]}
        if res.group:
            details["group"] = res.group
        return json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            }
        )

    def delete_collection(self, request: Request, res: Resource, namespace: str | None) -> Response:
        items = self.store.list(res, self.query(request, namespace))
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

    async def scale(
        self, request: Request, res: Resource, namespace: str | None, name: str
    ) -> Response:
        current = self.store.require(res, namespace, name)
        scale = self._scale_of(current)
        if request.method == "GET":
            return json_response(scale)
        body = await self.body(request)
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
        return json_response(self._scale_of(obj))

    async def status(
        self, request: Request, res: Resource, namespace: str | None, name: str
    ) -> Response:
        current = self.store.require(res, namespace, name)
        if request.method == "GET":
            return json_response(current)
        body = await self.body(request)
        new = body if request.method == "PUT" else self._patched(request, current, body)
        obj = copy.deepcopy(current)
        obj["status"] = new.get("status")
        if not self._dry_run(request):
            obj = self.store.update(res, obj)
        return json_response(obj)

    @staticmethod
    async def body(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            raise bad_request("the body of the request was empty")
        if "protobuf" in request.headers.get("content-type", ""):
            try:
                return protobuf.decode(raw)
            except protobuf.ProtobufError as exc:
                raise StoreError(415, "UnsupportedMediaType", str(exc)) from None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    # -- metrics.k8s.io ---------------------------------------------------------------

    def read_metrics(
        self, request: Request, res: Resource, namespace: str | None, name: str | None
    ) -> Response:
        if request.method != "GET":
            return status_response(405, "MethodNotAllowed", "metrics are read-only")
        params = request.query_params
        metrics = self.metrics
        if name is None:
            items = metrics.list(
                res.plural, namespace, params.get("labelSelector"), params.get("fieldSelector")
            )
            return json_response(
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
        return json_response(found)
