"""irlib connects to the lab's Kubernetes API as kubectl does, and as it would from a pod: a
kubeconfig holding a ServiceAccount's token, or, with no kubeconfig at all, the in-cluster
configuration (the token and CA laid out as the kubelet mounts them, KUBERNETES_SERVICE_HOST
and _PORT). A 403 is an ERROR check naming the permission that is missing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from irlib.diagnosis import reason_of
from irlib.k8s import Kube, checks
from irlib.results import Status
from tests.helpers import LabHandle, irlib, mount_service_account, require_binary

NS = "trading"
ACCOUNT = "irlib-incluster"
RBAC = "rbac.authorization.k8s.io"
# what p1_system_unavailable reads, and nothing else
READS = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "events"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["get", "list"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
]
CLUSTER_READS = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["nodes"], "verbs": ["get", "list"]},
]


def _apply(lab: LabHandle, *docs: dict[str, Any]) -> None:
    cmd = [require_binary("kubectl", "kubectl"), "--kubeconfig", lab.exports["KUBECONFIG"]]
    result = subprocess.run(
        [*cmd, "apply", "-f", "-"],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _role(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "Role",
        "metadata": {"name": ACCOUNT, "namespace": NS},
        "rules": rules,
    }


def _bindings() -> list[dict[str, Any]]:
    subject = [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NS}]
    return [
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ACCOUNT},
            "rules": CLUSTER_READS,
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": NS},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": ACCOUNT},
            "subjects": subject,
        },
        {
            "apiVersion": f"{RBAC}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": ACCOUNT},
            "subjects": subject,
        },
    ]


@pytest.fixture(scope="module")
def token(lab: LabHandle) -> Iterator[str]:
    """A read-only account for the P1 runbook's reads, and its token (2 h)."""
    lab.kubectl("create", "serviceaccount", ACCOUNT, "-n", NS)
    _apply(lab, _role(READS), *_bindings())
    try:
        yield lab.kubectl("create", "token", ACCOUNT, "-n", NS, "--duration=2h").stdout.strip()
    finally:
        lab.kubectl("delete", "serviceaccount,role,rolebinding", ACCOUNT, "-n", NS, check=False)
        lab.kubectl("delete", "clusterrole,clusterrolebinding", ACCOUNT, check=False)


def _mount(lab: LabHandle, where: Path, token: str) -> Path:
    return mount_service_account(lab, where, token, NS)


def _pod_env(lab: LabHandle, where: Path, mount: Path | None) -> dict[str, str]:
    """A pod's environment: the API's service variables, no kubeconfig anywhere; the files'
    place by IRLIB_K8S_TOKEN_FILE / IRLIB_K8S_CA_FILE when `mount` is given."""
    home = where / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in lab.env.items() if k != "KUBECONFIG"}
    env.update(
        HOME=str(home),
        KUBERNETES_SERVICE_HOST=lab.lab.config.host,
        KUBERNETES_SERVICE_PORT=str(lab.lab.config.ports["kubernetes"]),
    )
    if mount is not None:
        env.update(
            IRLIB_K8S_TOKEN_FILE=str(mount / "token"), IRLIB_K8S_CA_FILE=str(mount / "ca.crt")
        )
    return env


def test_in_cluster_configuration_reads_with_the_accounts_rights(
    lab: LabHandle, token: str, tmp_path: Path
) -> None:
    env = _pod_env(lab, tmp_path, _mount(lab, tmp_path, token))
    kube = Kube(kubeconfig=None, context=None, namespace=NS, environ=env)
    assert kube.source == "in-cluster"
    assert kube.api is not None and kube.api.configuration.host == lab.lab.config.url("kubernetes")
    pods = checks.check_pods(kube)
    assert pods.status is Status.OK, pods.summary
    assert checks.check_nodes(kube).status is Status.OK
    assert checks.check_logs(kube, app="api-service").status is not Status.ERROR
    # not granted: services; the check cannot look, and says which permission it lacks
    with pytest.raises(Exception, match=r"^forbidden: cannot list services in namespace trading "):
        kube.request("GET", f"/api/v1/namespaces/{NS}/services")


def test_a_kubeconfig_with_the_accounts_token_serves_as_well(
    lab: LabHandle, token: str, tmp_path: Path
) -> None:
    data = yaml.safe_load(Path(lab.exports["KUBECONFIG"]).read_text())
    data["users"][0]["user"] = {"token": token}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(data))
    kube = Kube(kubeconfig=str(kubeconfig), context=None, namespace=NS)
    assert kube.source == f"kubeconfig {kubeconfig}"
    assert checks.check_pods(kube).status is Status.OK
    assert checks.check_top_nodes(kube).status is not Status.ERROR


def test_a_missing_permission_is_an_error_that_names_it(
    lab: LabHandle, token: str, tmp_path: Path
) -> None:
    without_logs = [
        {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list"]},
        *READS[1:],
    ]
    _apply(lab, _role(without_logs))
    try:
        env = _pod_env(lab, tmp_path, _mount(lab, tmp_path, token))
        kube = Kube(kubeconfig=None, context=None, namespace=NS, environ=env)
        logs = checks.check_logs(kube, app="api-service")
    finally:
        _apply(lab, _role(READS))
    assert logs.status is Status.ERROR
    assert logs.summary == (
        "forbidden: cannot get pods/log in namespace trading (`irlib deploy manifests` grants "
        "it: Role rule: apiGroups [''] resources [pods/log] verbs [get])"
    )
    assert logs.facts["http_status"] == 403
    assert logs.facts["missing_permission"] == {
        "verb": "get",
        "group": "",
        "resource": "pods/log",
        "namespace": NS,
    }
    assert logs.facts["api_message"].startswith('pods "api-service-') and logs.facts[
        "api_message"
    ].endswith(
        'is forbidden: User "system:serviceaccount:trading:irlib-incluster" cannot get resource '
        '"pods/log" in API group "" in the namespace "trading"'
    )
    assert reason_of(logs) == "forbidden"


def _profile(lab: LabHandle, where: Path, mount: Path | None) -> str:
    """The lab's profile without its kubeconfig; the files' place in it when `mount` is given."""
    data = yaml.safe_load(Path(lab.exports["IRLIB_PROFILE"]).read_text())
    data["kubernetes"].pop("kubeconfig", None)
    data["kubernetes"].pop("context", None)
    if mount is not None:
        data["kubernetes"].update(token_file=str(mount / "token"), ca_file=str(mount / "ca.crt"))
    path = where / "in-cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run(env: dict[str, str], profile: str, outputs: Path) -> tuple[int, dict[str, Any]]:
    result = irlib(
        "run", "p1_system_unavailable", "--profile", profile, "--outputs", str(outputs),
        env=env, timeout=300,
    )  # fmt: skip
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert (run_dir / "results.json").is_file(), result.stdout + result.stderr
    return result.returncode, json.loads((run_dir / "results.json").read_text())


def test_the_p1_runbook_runs_in_cluster_style_and_a_removed_permission_fails_it(
    lab: LabHandle, token: str, tmp_path: Path
) -> None:
    mount = _mount(lab, tmp_path, token)
    # the files named by the profile (no IRLIB_K8S_* variables)
    env = _pod_env(lab, tmp_path, None)
    code, results = _run(env, _profile(lab, tmp_path, mount), tmp_path / "out")
    assert code == 0, results["verdict"]
    assert results["verdict"]["state"] == "healthy"
    assert not [c for c in results["checks"] if c["status"] == "error"]
    # pods/log taken away: every log check is an error naming it, and the run is not healthy
    _apply(lab, _role([READS[0] | {"resources": ["pods", "events"]}, *READS[1:]]))
    try:
        env = _pod_env(lab, tmp_path, mount)  # the files named by IRLIB_K8S_TOKEN_FILE / _CA_FILE
        code, results = _run(env, _profile(lab, tmp_path, None), tmp_path / "out2")
    finally:
        _apply(lab, _role(READS))
    assert code == 1
    assert results["verdict"]["state"] != "healthy"
    errors = {c["check"]: c["summary"] for c in results["checks"] if c["status"] == "error"}
    assert errors, results["checks"]
    assert all("cannot get pods/log in namespace trading" in s for s in errors.values()), errors
    assert any(name.startswith("logs") for name in errors), errors
