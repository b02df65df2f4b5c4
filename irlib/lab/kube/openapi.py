"""A minimal OpenAPI v3 per group-version, so that `kubectl apply` and `create` work: it
says PATCH takes `?fieldValidation=` (the server validates, kubectl needs no schema) and
carries no schemas, so `kubectl explain` finds nothing (the lab serves no API reference).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from irlib.lab.kube.resources import BY_GROUP_VERSION, Resource

QUERY_PARAMS = ("fieldValidation", "fieldManager", "dryRun")


def _prefix(gv: str) -> str:
    return "api/v1" if gv == "v1" else f"apis/{gv}"


def _operation(r: Resource, verb: str) -> dict[str, Any]:
    return {
        "operationId": f"{verb}{r.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [
            {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for p in QUERY_PARAMS
        ],
        "responses": {"200": {"description": "OK"}},
    }


def document(gv: str) -> dict[str, Any] | None:
    kinds = BY_GROUP_VERSION.get(gv)
    if kinds is None:
        return None
    paths: dict[str, Any] = {}
    for r in kinds.values():
        if "patch" not in r.verbs:
            continue
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        base = f"/{_prefix(gv)}{scope}/{r.plural}"
        paths[base] = {"post": _operation(r, "post")}
        paths[base + "/{name}"] = {"patch": _operation(r, "patch"), "put": _operation(r, "put")}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.4"},
        "paths": paths,
        "components": {"schemas": {}},
    }


def _hash(gv: str) -> str:
    return (
        hashlib.sha512(json.dumps(document(gv), sort_keys=True).encode()).hexdigest()[:32].upper()
    )


def index() -> dict[str, Any]:
    return {
        "paths": {
            _prefix(gv): {"serverRelativeURL": f"/openapi/v3/{_prefix(gv)}?hash={_hash(gv)}"}
            for gv in BY_GROUP_VERSION
        }
    }


def lookup(path_parts: list[str]) -> dict[str, Any] | None:
    """The document for `/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`."""
    if path_parts[:2] == ["api", "v1"] and len(path_parts) == 2:
        return document("v1")
    if len(path_parts) == 3 and path_parts[0] == "apis":
        return document(f"{path_parts[1]}/{path_parts[2]}")
    return None
