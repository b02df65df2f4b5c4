"""Least privilege, computed: each check's and mitigation's declared permissions match the
Kubernetes calls its code makes (read off its source), and the manifests built from them grant
reads only, writes only when asked, and never hold a secret."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from irlib import deploy
from irlib.k8s import checks, mitigations
from irlib.k8s import permissions as P
from irlib.profile import profile_from_dict

# What each call of irlib.k8s.Kube asks of the API server (one request each).
KUBE_CALLS = {
    "pods": P.LIST_PODS,
    "pod": P.GET_POD,
    "log": P.GET_POD_LOG,
    "delete_pod": P.DELETE_POD,
    "events": P.LIST_EVENTS,
    "nodes": P.LIST_NODES,
    "ingresses": P.LIST_INGRESSES,
    "deployment": P.GET_DEPLOYMENT,
    "patch_deployment": P.PATCH_DEPLOYMENT,
    "scale_deployment": P.PATCH_DEPLOYMENT_SCALE,
    "replicasets": P.LIST_REPLICASETS,
    "pod_metrics": P.LIST_POD_METRICS,
    "node_metrics": P.LIST_NODE_METRICS,
}
PROFILE = {
    "name": "prod",
    "kubernetes": {
        "kubeconfig": "/home/me/.kube/config",
        "context": "prod",
        "namespace": "trading",
    },
    "api": {"url": "http://api", "token_env": "IRLIB_ADMIN_TOKEN"},
    "broker": {"url": "http://broker", "token_env": "IRLIB_BROKER_TOKEN"},
    "market_data": {"url": "http://md"},
    "postgres": {"dsn": "postgresql://irlib@db/trading", "password_env": "IRLIB_DB_PASSWORD"},
    "redis": {"url": "redis://redis:6379"},
    "prometheus": {"url": "http://prometheus:9090"},
}


def calls(fn: Callable[..., Any], seen: set[str] | None = None) -> set[str]:
    """The Kube methods `fn` calls, directly or through the module's private helpers."""
    seen = seen if seen is not None else set()
    module = inspect.getmodule(fn)
    found: set[str] = set()
    for node in ast.walk(ast.parse(inspect.getsource(fn))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "kube":
            found.add(f.attr)
        elif isinstance(f, ast.Name) and f.id.startswith("_") and f.id not in seen:
            helper = getattr(module, f.id, None)
            if inspect.isfunction(helper):
                seen.add(f.id)
                found |= calls(helper, seen)
    return found


def kube_functions(module: Any) -> list[Callable[..., Any]]:
    return [
        fn
        for name, fn in vars(module).items()
        if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")
        and "kube" in inspect.signature(fn).parameters
    ]  # fmt: skip


@pytest.mark.parametrize(
    "fn",
    kube_functions(checks) + kube_functions(mitigations),
    ids=lambda fn: fn.__name__,
)
def test_each_function_declares_exactly_the_calls_it_makes(fn: Callable[..., Any]) -> None:
    made = {KUBE_CALLS[name] for name in calls(fn)}
    assert set(getattr(fn, "__permissions__", ())) == made, sorted(calls(fn))


def test_the_read_role_is_reads_and_the_mitigation_role_only_what_reads_lack() -> None:
    reads = deploy.read_permissions()
    assert {p.verb for p in reads} == {"get", "list"}
    assert {p.verb for p in deploy.mitigation_permissions()} == {"patch", "delete"}
    assert P.GET_POD_LOG in reads and P.LIST_NODES in reads


def test_the_manifests_bind_the_account_to_its_roles_and_hold_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IRLIB_ADMIN_TOKEN", "admin-token-value-123")
    profile = profile_from_dict(PROFILE)
    text = deploy.manifests_yaml(profile, profile_text=yaml.safe_dump(PROFILE), every="15m")
    assert "admin-token-value-123" not in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [
        ("ServiceAccount", "irlib-drill"),
        ("Role", "irlib-drill-read"),
        ("RoleBinding", "irlib-drill-read"),
        ("ClusterRole", "irlib-drill-trading-read"),
        ("ClusterRoleBinding", "irlib-drill-trading-read"),
        ("ConfigMap", "irlib-profile"),
        ("PersistentVolumeClaim", "irlib-evidence"),
        ("CronJob", "irlib-health-drill"),
    ]
    by_kind = {d["kind"]: d for d in docs}
    verbs = {v for d in docs if "rules" in d for r in d["rules"] for v in r["verbs"]}
    assert verbs == {"get", "list"}
    assert by_kind["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]},
        {"apiGroups": ["metrics.k8s.io"], "resources": ["nodes"], "verbs": ["list"]},
    ]
    subject = {"kind": "ServiceAccount", "name": "irlib-drill", "namespace": "trading"}
    assert by_kind["RoleBinding"]["subjects"] == [subject]
    assert by_kind["ClusterRoleBinding"]["subjects"] == [subject]
    pod = by_kind["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "irlib-drill"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    shipped = yaml.safe_load(by_kind["ConfigMap"]["data"]["profile.yaml"])
    assert "kubeconfig" not in shipped["kubernetes"] and "context" not in shipped["kubernetes"]
    assert "IRLIB_DB_PASSWORD" in text.splitlines()[2]  # the Secret to create, by names


def test_mitigations_get_their_own_role_only_when_asked() -> None:
    profile = profile_from_dict(PROFILE)
    docs = deploy.manifests(profile, profile_text=yaml.safe_dump(PROFILE), with_mitigations=True)
    role = next(d for d in docs if d["metadata"]["name"] == "irlib-drill-mitigate")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    ]
    assert any(d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role["metadata"]["name"]
               for d in docs)  # fmt: skip


def test_serve_gets_its_own_account_bound_to_the_read_roles_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IRLIB_SERVE_TOKEN", "serve-token-value-456")
    monkeypatch.setenv("IRLIB_INCIDENT_WEBHOOK_URL", "https://hooks.example.com/T0/secret")
    profile = profile_from_dict(PROFILE)
    plain = deploy.manifests(profile, profile_text=yaml.safe_dump(PROFILE))
    assert not any(d["metadata"]["name"].startswith("irlib-serve") for d in plain)
    text = deploy.manifests_yaml(profile, profile_text=yaml.safe_dump(PROFILE), with_serve=True)
    assert "serve-token-value-456" not in text and "hooks.example.com" not in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    serve = [d for d in docs if d["metadata"]["name"].startswith("irlib-serve")]
    assert [(d["kind"], d["metadata"]["name"]) for d in serve] == [
        ("ServiceAccount", "irlib-serve"),
        ("RoleBinding", "irlib-serve-read"),
        ("ClusterRoleBinding", "irlib-serve-trading-read"),
        ("PersistentVolumeClaim", "irlib-serve-evidence"),
        ("Deployment", "irlib-serve"),
        ("Service", "irlib-serve"),
    ]
    by_kind = {d["kind"]: d for d in serve}
    # no Role of its own: the drill's read Role and ClusterRole, bound to its account
    subject = [{"kind": "ServiceAccount", "name": "irlib-serve", "namespace": "trading"}]
    assert by_kind["RoleBinding"]["roleRef"]["name"] == "irlib-drill-read"
    assert by_kind["ClusterRoleBinding"]["roleRef"]["name"] == "irlib-drill-trading-read"
    assert (
        by_kind["RoleBinding"]["subjects"] == by_kind["ClusterRoleBinding"]["subjects"] == subject
    )
    read_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    assert set(read_roles) == {"irlib-drill-read", "irlib-drill-trading-read"}
    deployment = by_kind["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    assert pod["serviceAccountName"] == "irlib-serve"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"][:2] == ["irlib", "serve"]
    assert not any("TOKEN" in a or "http" in a for a in container["command"])  # never args
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["IRLIB_SERVE_TOKEN"] == {"name": "irlib-secrets", "key": "IRLIB_SERVE_TOKEN",
                                         "optional": False}  # fmt: skip
    assert env["IRLIB_INCIDENT_WEBHOOK_URL"]["optional"] is True
    assert {"IRLIB_ADMIN_TOKEN", "IRLIB_DB_PASSWORD"} <= set(env)  # what the runs read
    assert all("value" not in e for e in container["env"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = by_kind["Service"]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    assert service["ports"] == [{"name": "http", "port": 8900, "targetPort": "http"}]
    assert "irlib-serve.trading.svc:8900/v1/alertmanager" in text.split("---")[0]
