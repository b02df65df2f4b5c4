"""The lab API's RBAC decisions without a server: what a URL asks (RequestInfo), when a
rule allows it, the 403 message, and the protobuf bodies kubectl's typed commands send."""

from __future__ import annotations

import pytest

from irlib.lab.kube import protobuf
from irlib.lab.kube.rbac import forbidden, rule_allows
from irlib.lab.kube.requestinfo import User, parse, serviceaccount_user

DRILL = serviceaccount_user("trading", "irlib-drill")

REQUESTS = [
    ("GET", "/api/v1/namespaces/trading/pods", "", ("list", "", "pods", "", "trading", "")),
    ("GET", "/api/v1/namespaces/trading/pods", "watch=1", ("watch", "", "pods", "", "trading", "")),
    (
        "GET",
        "/api/v1/namespaces/trading/pods",
        "fieldSelector=metadata.name%3Dp1",
        ("list", "", "pods", "", "trading", "p1"),
    ),
    (
        "GET",
        "/api/v1/namespaces/trading/pods/p1/log",
        "",
        ("get", "", "pods", "log", "trading", "p1"),
    ),
    ("GET", "/api/v1/namespaces/trading", "", ("get", "", "namespaces", "", "trading", "trading")),
    (
        "DELETE",
        "/api/v1/namespaces/trading/pods",
        "",
        ("deletecollection", "", "pods", "", "trading", ""),
    ),
    (
        "PATCH",
        "/apis/apps/v1/namespaces/trading/deployments/api/scale",
        "",
        ("patch", "apps", "deployments", "scale", "trading", "api"),
    ),
    ("GET", "/api/v1/nodes", "", ("list", "", "nodes", "", "", "")),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "want"), REQUESTS, ids=[f"{m} {p}?{q}" for m, p, q, _ in REQUESTS]
)
def test_requestinfo_reads_the_url_as_the_apiserver_does(
    method: str, path: str, query: str, want: tuple[str, ...]
) -> None:
    a = parse(DRILL, method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version"]
)
def test_discovery_and_version_are_non_resource_requests(path: str) -> None:
    a = parse(DRILL, "GET", path, "")
    assert not a.resource_request and a.verb == "get" and a.path == path


RULES = [
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}, "list pods", True),
    ({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, "get pods/log", False),
    ({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}, "get pods/log", True),
    ({"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}, "get pods/log", True),
    (
        {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["patch"]},
        "patch deployments/scale",
        True,
    ),
    ({"apiGroups": ["apps"], "resources": ["pods"], "verbs": ["list"]}, "list pods", False),
    (
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"], "verbs": ["get"]},
        "get pods p1",
        True,
    ),
    (
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"], "verbs": ["get"]},
        "get pods p2",
        False,
    ),
    (
        {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p1"], "verbs": ["list"]},
        "list pods",
        False,
    ),
]


def _attrs(text: str):  # type: ignore[no-untyped-def]
    verb, resource, *name = text.split()
    resource, _, sub = resource.partition("/")
    if sub and not name:
        name = ["p1"]  # a subresource is always of one object
    group = "apps" if resource == "deployments" else ""
    path = f"/apis/{group}/v1" if group else "/api/v1"
    path += f"/namespaces/trading/{resource}" + (f"/{name[0]}" if name else "")
    path += f"/{sub}" if sub else ""
    method = {"list": "GET", "get": "GET", "patch": "PATCH"}[verb]
    return parse(DRILL, method, path, "")


@pytest.mark.parametrize(("rule", "request_", "allowed"), RULES, ids=[r for _, r, _ in RULES])
def test_a_rule_allows_what_kubernetes_rbac_allows(
    rule: dict, request_: str, allowed: bool
) -> None:
    assert rule_allows(rule, _attrs(request_)) is allowed


def test_nonresource_urls_match_exactly_or_by_a_trailing_star() -> None:
    rule = {"nonResourceURLs": ["/api/*", "/version"], "verbs": ["get"]}
    assert rule_allows(rule, parse(DRILL, "GET", "/api/v1", ""))
    assert rule_allows(rule, parse(DRILL, "GET", "/version", ""))
    assert not rule_allows(rule, parse(DRILL, "GET", "/metrics", ""))


def test_the_forbidden_message_is_the_apiservers() -> None:
    e = forbidden(parse(DRILL, "GET", "/api/v1/namespaces/trading/pods/p1/log", ""))
    assert e.code == 403 and e.reason == "Forbidden"
    assert e.message == (
        'pods "p1" is forbidden: User "system:serviceaccount:trading:irlib-drill" cannot get '
        'resource "pods/log" in API group "" in the namespace "trading"'
    )
    assert e.details == {"name": "p1", "kind": "pods"}
    nodes = forbidden(parse(User("jane"), "GET", "/api/v1/nodes", ""), "RBAC: x")
    assert nodes.message == (
        'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the '
        "cluster scope: RBAC: x"
    )
    path = forbidden(parse(User("jane"), "GET", "/metrics", ""))
    assert path.message == 'forbidden: User "jane" cannot get path "/metrics"'


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_bodies_read_as_their_json() -> None:
    meta = _field(1, b"r1") + _field(2, b"") + _field(3, b"trading")
    rule = _field(1, b"get") + _field(2, b"") + _field(3, b"pods")
    role = _field(1, meta) + _field(2, rule)
    type_meta = _field(1, b"rbac.authorization.k8s.io/v1") + _field(2, b"Role")
    body = protobuf.MAGIC + _field(1, type_meta) + _field(2, role)
    assert protobuf.decode(body) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r1", "namespace": "trading"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
    }
    with pytest.raises(protobuf.ProtobufError, match="not Pod: send JSON"):
        protobuf.decode(protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Pod")))
