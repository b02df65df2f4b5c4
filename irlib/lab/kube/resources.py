"""The resource types the Kubernetes API emulator serves, and their discovery documents.

One table of kinds (group, version, plural, singular, short names, verbs) drives the URL
router, the store's keys and the legacy discovery answers (`/api`, `/apis`, `/apis/g/v`)
that kubectl and the Python client read before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    stored: bool = True  # False: computed on request (metrics, reviews)
    has_status: bool = True  # spec writes leave status alone (a status subresource)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def qualified(self) -> str:
        """How the apiserver names the resource in messages: `deployments.apps`."""
        return self.key


def _r(group_version: str, plural: str, kind: str, short: str = "", **kw: Any) -> Resource:
    group, _, version = group_version.rpartition("/")
    singular = kw.pop("singular", kind.lower())
    short_names = (short,) if short else ()
    return Resource(group, version, plural, singular, kind, short_names=short_names, **kw)


ALL = ("all",)
METRICS: dict[str, Any] = {"singular": "", "verbs": ("get", "list"), "stored": False}
# the authorization and authentication reviews: created, answered, never stored
REVIEW: dict[str, Any] = {"verbs": ("create",), "stored": False, "namespaced": False}
RBAC = "rbac.authorization.k8s.io/v1"
RESOURCES: list[Resource] = [
    _r("v1", "namespaces", "Namespace", "ns", namespaced=False),
    _r("v1", "nodes", "Node", "no", namespaced=False),
    _r("v1", "pods", "Pod", "po", subresources=("log", "status"), categories=ALL),
    _r("v1", "services", "Service", "svc", categories=ALL),
    _r("v1", "endpoints", "Endpoints", "ep", has_status=False),
    # what `irlib deploy manifests` applies beside the RBAC objects: stored, nothing runs them
    _r("v1", "configmaps", "ConfigMap", "cm", has_status=False),
    _r("v1", "persistentvolumeclaims", "PersistentVolumeClaim", "pvc"),
    _r("v1", "events", "Event", "ev", has_status=False),
    _r(
        "apps/v1",
        "deployments",
        "Deployment",
        "deploy",
        subresources=("scale", "status"),
        categories=ALL,
    ),
    _r(
        "apps/v1",
        "replicasets",
        "ReplicaSet",
        "rs",
        subresources=("scale", "status"),
        categories=ALL,
    ),
    _r(
        "apps/v1",
        "statefulsets",
        "StatefulSet",
        "sts",
        subresources=("scale", "status"),
        categories=ALL,
    ),
    _r("batch/v1", "cronjobs", "CronJob", "cj", subresources=("status",), categories=ALL),
    _r("networking.k8s.io/v1", "ingresses", "Ingress", "ing", subresources=("status",)),
    _r("coordination.k8s.io/v1", "leases", "Lease", has_status=False),
    _r("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", has_status=False),
    _r("metrics.k8s.io/v1beta1", "nodes", "NodeMetrics", namespaced=False, **METRICS),
    _r("metrics.k8s.io/v1beta1", "pods", "PodMetrics", **METRICS),
    _r("v1", "serviceaccounts", "ServiceAccount", "sa", has_status=False, subresources=("token",)),
    _r(RBAC, "roles", "Role", has_status=False),
    _r(RBAC, "rolebindings", "RoleBinding", has_status=False),
    _r(RBAC, "clusterroles", "ClusterRole", namespaced=False, has_status=False),
    _r(RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False, has_status=False),
    _r("authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", **REVIEW),
    _r("authorization.k8s.io/v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", **REVIEW),
    _r("authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", **REVIEW),
    _r(
        "authorization.k8s.io/v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        **{**REVIEW, "namespaced": True},
    ),
    _r("authentication.k8s.io/v1", "selfsubjectreviews", "SelfSubjectReview", **REVIEW),
    _r("authentication.k8s.io/v1", "tokenreviews", "TokenReview", **REVIEW),
]
REVIEW_GROUPS = ("authorization.k8s.io", "authentication.k8s.io")

BY_GROUP_VERSION: dict[str, dict[str, Resource]] = {}
for _res in RESOURCES:
    BY_GROUP_VERSION.setdefault(_res.group_version, {})[_res.plural] = _res

BY_KEY = {r.key: r for r in RESOURCES}
BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def resource(key: str) -> Resource:
    """By store key: `pods`, `deployments.apps`, `ingresses.networking.k8s.io`."""
    return BY_KEY[key]


def lookup(group_version: str, plural: str) -> Resource | None:
    return BY_GROUP_VERSION.get(group_version, {}).get(plural)


# -- discovery ---------------------------------------------------------------------------

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4",
    "gitCommit": "59526cd4867447956156ae3a602fcbac10a2c335",
    "gitTreeState": "clean",
    "buildDate": "2025-04-22T16:02:27Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in out.setdefault(r.group, []):
            out[r.group].append(r.version)
    return out


def api_group(group: str) -> dict[str, Any] | None:
    versions = _groups().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs[0],
    }


def api_group_list() -> dict[str, Any]:
    groups = [api_group(g) for g in _groups()]
    for g in groups:
        if g:
            g.pop("kind")
            g.pop("apiVersion")
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _subresource_entry(r: Resource, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": f"{r.plural}/{sub}",
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": ["get", "patch", "update"],
    }
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub == "token":
        entry.update(
            group="authentication.k8s.io", version="v1", kind="TokenRequest", verbs=["create"]
        )
    return entry


def api_resource_list(group_version: str) -> dict[str, Any] | None:
    resources = BY_GROUP_VERSION.get(group_version)
    if resources is None:
        return None
    entries: list[dict[str, Any]] = []
    for r in resources.values():
        entry: dict[str, Any] = {
            "name": r.plural,
            # kubectl maps `pod` to `pods` through singularName; an empty one is derived from
            # the kind, which is what the apiserver itself sends for aggregated APIs.
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        entries.extend(_subresource_entry(r, sub) for sub in r.subresources)
    out: dict[str, Any] = {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": entries,
    }
    if "/" in group_version:
        out["apiVersion"] = "v1"
    return out
