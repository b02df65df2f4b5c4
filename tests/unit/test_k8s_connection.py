"""irlib's Kubernetes connection without a server: how a request's URL becomes the RBAC
permission a 403 names, and what a run with no configuration at all records."""

from __future__ import annotations

from pathlib import Path

import pytest

from irlib.errors import Unreachable
from irlib.k8s import Kube, checks, required_permission
from irlib.results import Status

PERMISSIONS = [
    ("GET", "/api/v1/namespaces/trading/pods", {}, ("list", "", "pods", "trading")),
    ("GET", "/api/v1/namespaces/trading/pods", {"watch": "true"}, ("watch", "", "pods", "trading")),
    ("GET", "/api/v1/namespaces/trading/pods/p1/log", {}, ("get", "", "pods/log", "trading")),
    ("GET", "/api/v1/nodes", {}, ("list", "", "nodes", "")),
    (
        "PATCH",
        "/apis/apps/v1/namespaces/trading/deployments/api/scale",
        {},
        ("patch", "apps", "deployments/scale", "trading"),
    ),
    ("DELETE", "/api/v1/namespaces/trading/pods/p1", {}, ("delete", "", "pods", "trading")),
    (
        "GET",
        "/apis/metrics.k8s.io/v1beta1/nodes",
        {},
        ("list", "metrics.k8s.io", "nodes", ""),
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "want"), PERMISSIONS, ids=[f"{m} {p}" for m, p, *_ in PERMISSIONS]
)
def test_a_request_needs_the_permission_the_apiserver_reads_from_its_url(
    method: str, path: str, query: dict[str, str], want: tuple[str, str, str, str]
) -> None:
    assert required_permission(method, path, query) == dict(
        zip(("verb", "group", "resource", "namespace"), want, strict=True)
    )


def test_no_kubeconfig_and_no_pod_is_an_error_in_every_check(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}  # no KUBECONFIG, no ~/.kube/config, no KUBERNETES_SERVICE_*
    kube = Kube(kubeconfig=None, context=None, namespace="trading", environ=env)
    assert kube.source == "none"
    with pytest.raises(Unreachable, match="no Kubernetes connection: no kubeconfig"):
        kube.pods()
    check = checks.check_pods(kube)
    assert check.status is Status.ERROR
    assert "in-cluster configuration" in check.summary
    assert "/var/run/secrets/kubernetes.io/serviceaccount/token" in check.summary


def test_the_in_cluster_files_come_from_the_environment_when_the_profile_names_none(
    tmp_path: Path,
) -> None:
    (tmp_path / "token").write_text("t0ken")
    (tmp_path / "ca.crt").write_text("not really a CA")  # read by TLS only when connecting
    env = {
        "HOME": str(tmp_path),
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "IRLIB_K8S_TOKEN_FILE": str(tmp_path / "token"),
        "IRLIB_K8S_CA_FILE": str(tmp_path / "ca.crt"),
    }
    kube = Kube(kubeconfig=None, context=None, namespace="trading", environ=env)
    assert kube.source == "in-cluster" and kube.api is not None
    assert kube.api.configuration.host == "https://10.96.0.1:443"
    assert kube.api.configuration.ssl_ca_cert == str(tmp_path / "ca.crt")
    named = Kube(
        kubeconfig=None,
        context=None,
        namespace="trading",
        environ={**env, "IRLIB_K8S_TOKEN_FILE": str(tmp_path / "missing")},
        token_file=str(tmp_path / "token"),  # the profile's setting wins over the variable
    )
    assert named.source == "in-cluster"


@pytest.mark.parametrize("content", [None, "clusters: ["], ids=["missing", "not-yaml"])
def test_an_unusable_kubeconfig_is_an_error_naming_it(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    kube = Kube(kubeconfig=str(path), context=None, namespace="trading", environ={})
    check = checks.check_pods(kube)
    assert check.status is Status.ERROR
    assert check.summary.startswith(f"no Kubernetes connection: kubeconfig {path}: ")
