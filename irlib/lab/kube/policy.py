"""What a new cluster's RBAC holds before anyone applies anything: the apiserver's bootstrap
ClusterRoles and bindings that every user relies on (cluster-admin for system:masters,
discovery and the self-reviews for every authenticated user), and a `default`
ServiceAccount in each namespace, made when the namespace is.
"""

from __future__ import annotations

from typing import Any

from irlib.lab.kube import resources
from irlib.lab.kube.meta import Obj, parse_time
from irlib.lab.kube.rbac import CLUSTERROLEBINDINGS, CLUSTERROLES, GROUP
from irlib.lab.kube.requestinfo import AUTHENTICATED, MASTERS, UNAUTHENTICATED
from irlib.lab.kube.store import Store, WatchEvent

NAMESPACES = resources.resource("namespaces")
SERVICEACCOUNTS = resources.resource("serviceaccounts")
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}

DISCOVERY_URLS = [
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
]
PUBLIC_INFO_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]

CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
        {"nonResourceURLs": ["*"], "verbs": ["*"]},
    ],
    "system:discovery": [{"nonResourceURLs": DISCOVERY_URLS, "verbs": ["get"]}],
    "system:public-info-viewer": [{"nonResourceURLs": PUBLIC_INFO_URLS, "verbs": ["get"]}],
    "system:basic-user": [
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["selfsubjectreviews"],
            "verbs": ["create"],
        },
    ],
}
CLUSTER_ROLE_BINDINGS: dict[str, list[str]] = {
    "cluster-admin": [MASTERS],
    "system:discovery": [AUTHENTICATED],
    "system:public-info-viewer": [AUTHENTICATED, UNAUTHENTICATED],
    "system:basic-user": [AUTHENTICATED],
}


def _meta(name: str) -> Obj:
    return {"name": name, "labels": dict(BOOTSTRAP_LABELS), "annotations": dict(AUTOUPDATE)}


def bootstrap(store: Store, timestamp: float) -> None:
    """Write the bootstrap policy and the namespaces' `default` accounts; from then on a new
    namespace gets its `default` account as the ServiceAccount controller makes it."""
    for name, rules in CLUSTER_ROLES.items():
        store.create(CLUSTERROLES, {"metadata": _meta(name), "rules": rules}, timestamp=timestamp)
    for name, groups in CLUSTER_ROLE_BINDINGS.items():
        binding = {
            "metadata": _meta(name),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": g} for g in groups],
        }
        store.create(CLUSTERROLEBINDINGS, binding, timestamp=timestamp)
    for ns in store.list(NAMESPACES):
        born = parse_time(ns["metadata"].get("creationTimestamp"))
        _default_account(store, ns["metadata"]["name"], born)

    def on_change(event: WatchEvent) -> None:
        if event.type == "ADDED" and event.key == NAMESPACES.key:
            _default_account(store, event.obj["metadata"]["name"], None)

    store.add_listener(on_change)


def _default_account(store: Store, namespace: str, timestamp: float | None) -> None:
    if store.get(SERVICEACCOUNTS, namespace, "default") is None:
        account = {"metadata": {"name": "default", "namespace": namespace}}
        store.create(SERVICEACCOUNTS, account, timestamp=timestamp)
