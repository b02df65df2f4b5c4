"""The lab's Kubernetes API as a cluster's is reached: TLS verified against the lab's CA, a
bearer token on every request (401 without), ServiceAccounts and their tokens, RBAC enforced
with the apiserver's 403 messages, `kubectl auth can-i` (and `--list`), impersonation.

Driven by the real kubectl and the official client against the emulator started as a process;
each test makes the accounts and roles it needs under names of its own.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from irlib.lab.kube import pki
from tests.lab.kube_fixtures import Emulator, start_emulator

NS = "trading"
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
# kubectl's words for a 401 (the parenthesis differs whether discovery or the request met it)
LOGGED_OUT = "error: You must be logged in to the server ("


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emulator = start_emulator(tmp_path_factory.mktemp("kube-auth"))
    try:
        yield emulator
    finally:
        code = emulator.stop()
        assert code == 0, f"the emulator exited {code}:\n{emulator.log.read_text()}"


def _user(sa: str, namespace: str = NS) -> str:
    return f"system:serviceaccount:{namespace}:{sa}"


def _apply(emu: Emulator, *docs: dict[str, Any]) -> None:
    """`kubectl apply -f -` of the documents, as an operator applies a manifest."""
    text = yaml.safe_dump_all(docs)
    cmd = emu.command("apply", "-f", "-")
    result = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _role(name: str, rules: list[dict[str, Any]], *, kind: str = "Role") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if kind == "Role":
        meta["namespace"] = NS
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "rules": rules,
    }


def _binding(
    name: str, role: str, subjects: list[dict[str, Any]], *, role_kind: str = "Role", ns: str = NS
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    }


def _sa(name: str) -> dict[str, Any]:
    return {"kind": "ServiceAccount", "name": name, "namespace": NS}


def _account(emu: Emulator, name: str) -> str:
    """`kubectl create serviceaccount NAME` and `kubectl create token NAME`: the token."""
    out = emu.kubectl("create", "serviceaccount", name, "-n", NS).stdout
    assert out.strip() == f"serviceaccount/{name} created"
    token = emu.kubectl("create", "token", name, "-n", NS).stdout.strip()
    assert token.count(".") == 2  # a JWT, as a cluster's bound tokens are
    return token


def _can_i(emu: Emulator, *args: str) -> str:
    result = emu.kubectl("auth", "can-i", *args, check=False)
    answer = result.stdout.strip()
    assert result.returncode == (0 if answer == "yes" else 1), (result.stdout, result.stderr)
    return answer


def _kubeconfig(emu: Emulator, path: Path, token: str | None, *, ca: bool = True) -> str:
    """The lab's kubeconfig with another user (a token, or none) and optionally no CA."""
    data = yaml.safe_load(Path(emu.kubeconfig).read_text())
    data["users"][0]["user"] = {"token": token} if token else {}
    if not ca:
        data["clusters"][0]["cluster"].pop("certificate-authority-data")
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _ca(emu: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.path(emu.config, pki.CA_CERT)))


def _url(emu: Emulator, path: str) -> str:
    return emu.config.url("kubernetes") + path


# -- TLS -----------------------------------------------------------------------------------


def test_the_kubeconfig_carries_the_ca_and_the_admin_token(emu: Emulator) -> None:
    data = yaml.safe_load(Path(emu.kubeconfig).read_text())
    cluster = data["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert "insecure-skip-tls-verify" not in cluster
    ca = base64.b64decode(cluster["certificate-authority-data"])
    assert ca == pki.path(emu.config, pki.CA_CERT).read_bytes()
    assert data["users"][0]["user"]["token"] == pki.read(emu.config, pki.ADMIN_TOKEN)
    assert Path(emu.kubeconfig).stat().st_mode & 0o777 == 0o600
    for secret in (pki.CA_KEY, pki.SERVER_KEY, pki.ADMIN_TOKEN, pki.SIGNING_KEY):
        assert pki.path(emu.config, secret).stat().st_mode & 0o777 == 0o600, secret
    whoami = emu.kubectl("auth", "whoami").stdout
    assert re.search(r"Username\s+irlib-lab-admin", whoami)
    assert re.search(r"Groups\s+\[system:masters system:authenticated\]", whoami)


def test_a_client_without_the_lab_ca_cannot_connect(emu: Emulator, tmp_path: Path) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(_url(emu, "/readyz"), timeout=5)
    assert httpx.get(_url(emu, "/readyz"), timeout=5, verify=_ca(emu)).text == "ok"
    admin = pki.read(emu.config, pki.ADMIN_TOKEN)
    no_ca = _kubeconfig(emu, tmp_path / "no-ca", admin, ca=False)
    result = subprocess.run(
        emu.command("--kubeconfig", no_ca, "get", "pods", "-n", NS),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "x509: certificate signed by unknown authority" in result.stderr
    api = config.new_client_from_config(config_file=no_ca)
    # urllib3 retries, then raises; without retries v37 wraps the SSLError (status 0)
    with pytest.raises((ApiException, urllib3.exceptions.HTTPError), match="CERTIFICATE_VERIFY"):
        client.CoreV1Api(api).list_namespaced_pod(NS)


def test_the_official_client_verifies_the_ca_and_sends_the_token(emu: Emulator) -> None:
    api = config.new_client_from_config(config_file=emu.kubeconfig)
    assert api.configuration.verify_ssl
    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", NS} <= names


# -- authentication ------------------------------------------------------------------------


def test_no_token_or_a_wrong_one_is_401_with_the_status_body(emu: Emulator, tmp_path: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
        resp = httpx.get(
            _url(emu, f"/api/v1/namespaces/{NS}/pods"), headers=headers, verify=_ca(emu)
        )
        assert resp.status_code == 401, headers
        assert resp.json() == UNAUTHORIZED
    for path in ("/livez", "/readyz", "/healthz"):  # open, as a cluster's health endpoints are
        assert httpx.get(_url(emu, path), verify=_ca(emu)).status_code == 200
    # (with no credentials at all kubectl answers a 401 by prompting for a username)
    kubeconfig = _kubeconfig(emu, tmp_path / "wrong-token", "not-a-token")
    result = subprocess.run(
        emu.command("--kubeconfig", kubeconfig, "get", "pods", "-n", NS),
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert LOGGED_OUT in result.stderr, result.stderr


def test_token_request_answers_a_bound_token(emu: Emulator) -> None:
    emu.kubectl("create", "serviceaccount", "token-reader", "-n", NS)
    before = int(time.time())
    path = f"/api/v1/namespaces/{NS}/serviceaccounts/token-reader/token"
    admin = {"Authorization": f"Bearer {pki.read(emu.config, pki.ADMIN_TOKEN)}"}
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    resp = httpx.post(_url(emu, path), json=body, headers=admin, verify=_ca(emu))
    after = int(time.time())
    assert resp.status_code == 201, resp.text
    answer = resp.json()
    assert (answer["kind"], answer["apiVersion"]) == ("TokenRequest", "authentication.k8s.io/v1")
    assert answer["metadata"]["name"] == "token-reader"
    assert answer["spec"]["expirationSeconds"] == 3600
    assert answer["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    expires = datetime.fromisoformat(answer["status"]["expirationTimestamp"]).timestamp()
    assert before + 3600 <= expires <= after + 3600
    claims = json.loads(base64.urlsafe_b64decode(answer["status"]["token"].split(".")[1] + "=="))
    assert claims["sub"] == _user("token-reader")
    # `kubectl create token` (protobuf from its typed client) with --duration
    token = emu.kubectl("create", "token", "token-reader", "-n", NS, "--duration=20m").stdout
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["exp"] - claims["iat"] == 1200
    short = emu.kubectl("create", "token", "token-reader", "-n", NS, "--duration=5m", check=False)
    assert "may not specify a duration less than 10 minutes" in short.stderr
    missing = emu.kubectl("create", "token", "nobody", "-n", NS, check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr


def test_a_deleted_serviceaccounts_token_is_401(emu: Emulator) -> None:
    token = _account(emu, "short-lived")
    _apply(
        emu,
        _role("short-lived", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        _binding("short-lived", "short-lived", [_sa("short-lived")]),
    )
    assert emu.kubectl("--token", token, "get", "pods", "-n", NS).returncode == 0
    emu.kubectl("delete", "serviceaccount", "short-lived", "-n", NS)
    gone = emu.kubectl("--token", token, "get", "pods", "-n", NS, check=False)
    assert gone.returncode == 1 and LOGGED_OUT in gone.stderr
    # an account made anew under the same name has another uid: the old token stays dead
    emu.kubectl("create", "serviceaccount", "short-lived", "-n", NS)
    again = emu.kubectl("--token", token, "get", "pods", "-n", NS, check=False)
    assert again.returncode == 1 and LOGGED_OUT in again.stderr
    resp = httpx.get(
        _url(emu, f"/api/v1/namespaces/{NS}/pods"),
        headers={"Authorization": f"Bearer {token}"},
        verify=_ca(emu),
    )
    assert (resp.status_code, resp.json()) == (401, UNAUTHORIZED)


# -- RBAC ----------------------------------------------------------------------------------

DRILL_RULES = [
    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale"],
        "resourceNames": ["api-service"],
        "verbs": ["get"],
    },
]
SELF_REVIEWS = {
    ("selfsubjectreviews.authentication.k8s.io", "[]", "[create]"),
    ("selfsubjectaccessreviews.authorization.k8s.io", "[]", "[create]"),
    ("selfsubjectrulesreviews.authorization.k8s.io", "[]", "[create]"),
}


@pytest.fixture(scope="module")
def drill(emu: Emulator) -> str:
    """The `irlib-drill` account bound to DRILL_RULES by a Role applied with kubectl: its token."""
    token = _account(emu, "irlib-drill")
    _apply(
        emu,
        _role("irlib-drill-read", DRILL_RULES),
        _binding("irlib-drill-read", "irlib-drill-read", [_sa("irlib-drill")]),
    )
    return token


def _resource_rows(listing: str) -> set[tuple[str, str, str]]:
    """(resource, resource names, verbs) of `kubectl auth can-i --list`'s resource rows."""
    lines = listing.splitlines()
    header = lines[0]
    starts = [header.index(c) for c in ("Non-Resource URLs", "Resource Names", "Verbs")]
    rows = set()
    for line in lines[1:]:
        resource = line[: starts[0]].strip()
        if resource:
            rows.add((resource, line[starts[1] : starts[2]].strip(), line[starts[2] :].strip()))
    return rows


CAN_I = [
    (("list", "pods"), "yes"),
    (("watch", "pods"), "yes"),
    (("get", "pods", "--subresource=log"), "yes"),
    (("delete", "pods"), "no"),
    (("create", "pods"), "no"),
    (("list", "deployments.apps"), "yes"),
    (("patch", "deployments.apps"), "no"),
    (("get", "deployments.apps/api-service", "--subresource=scale"), "yes"),
    (("get", "deployments.apps/execution-service", "--subresource=scale"), "no"),
    (("update", "deployments.apps/api-service", "--subresource=scale"), "no"),
    (("list", "services"), "no"),
    (("list", "secrets"), "no"),
]


@pytest.mark.parametrize(("args", "answer"), CAN_I, ids=[" ".join(a) for a, _ in CAN_I])
def test_can_i_answers_exactly_what_the_role_grants(
    emu: Emulator, drill: str, args: tuple[str, ...], answer: str
) -> None:
    assert _can_i(emu, *args, "-n", NS, "--as", _user("irlib-drill")) == answer
    assert _can_i(emu, "--token", drill, *args, "-n", NS) == answer


def test_the_role_grants_nothing_outside_its_namespace_or_at_cluster_scope(
    emu: Emulator, drill: str
) -> None:
    assert _can_i(emu, "list", "pods", "-n", "default", "--as", _user("irlib-drill")) == "no"
    assert _can_i(emu, "--token", drill, "list", "nodes") == "no"
    assert _can_i(emu, "list", "nodes") == "yes"  # the admin (system:masters)


def test_can_i_list_shows_only_the_granted_rules(emu: Emulator, drill: str) -> None:
    granted = {
        ("pods", "[]", "[get list watch]"),
        ("pods/log", "[]", "[get list watch]"),
        ("deployments.apps", "[]", "[get list]"),
        ("deployments.apps/scale", "[api-service]", "[get]"),
    }
    as_admin = emu.kubectl("auth", "can-i", "--list", "-n", NS, "--as", _user("irlib-drill"))
    assert _resource_rows(as_admin.stdout) == granted | SELF_REVIEWS
    with_token = emu.kubectl("--token", drill, "auth", "can-i", "--list", "-n", NS)
    assert _resource_rows(with_token.stdout) == granted | SELF_REVIEWS
    elsewhere = emu.kubectl("--token", drill, "auth", "can-i", "--list", "-n", "default")
    assert _resource_rows(elsewhere.stdout) == SELF_REVIEWS
    # the non-resource rows are discovery's and the health endpoints', read-only
    assert "[get]" in with_token.stdout and "[/api/*]" in with_token.stdout


FORBIDDEN = [
    (
        ("get", "nodes"),
        'nodes is forbidden: User "system:serviceaccount:trading:irlib-drill" cannot list '
        'resource "nodes" in API group "" at the cluster scope',
    ),
    (
        ("get", "services", "-n", NS),
        'services is forbidden: User "system:serviceaccount:trading:irlib-drill" cannot list '
        'resource "services" in API group "" in the namespace "trading"',
    ),
    (
        ("delete", "pod", "timescaledb-0", "-n", NS),
        'pods "timescaledb-0" is forbidden: User "system:serviceaccount:trading:irlib-drill" '
        'cannot delete resource "pods" in API group "" in the namespace "trading"',
    ),
    (
        ("scale", "deployment/api-service", "--replicas=2", "-n", NS),
        'deployments.apps "api-service" is forbidden: User '
        '"system:serviceaccount:trading:irlib-drill" cannot patch resource "deployments/scale" '
        'in API group "apps" in the namespace "trading"',
    ),
]


@pytest.mark.parametrize(("args", "message"), FORBIDDEN, ids=[" ".join(a) for a, _ in FORBIDDEN])
def test_a_refusal_is_the_apiservers_403(
    emu: Emulator, drill: str, args: tuple[str, ...], message: str
) -> None:
    result = emu.kubectl("--token", drill, *args, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error from server (Forbidden): {message}"
    assert emu.kubectl("--token", drill, "get", "pods", "-n", NS).returncode == 0


def test_the_official_client_gets_the_403_status(emu: Emulator, drill: str, tmp_path: Path) -> None:
    api = config.new_client_from_config(config_file=_kubeconfig(emu, tmp_path / "kc", drill))
    core = client.CoreV1Api(api)
    assert core.list_namespaced_pod(NS).items
    with pytest.raises(ApiException) as refused:
        core.list_node()
    assert refused.value.status == 403
    status = json.loads(refused.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Forbidden", 403)
    assert status["details"] == {"kind": "nodes"}
    assert status["message"] == FORBIDDEN[0][1]


def test_logs_need_the_pods_log_subresource(emu: Emulator) -> None:
    token = _account(emu, "pods-only")
    _apply(
        emu,
        _role("pods-only", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        _binding("pods-only", "pods-only", [_sa("pods-only")]),
    )
    assert emu.kubectl("--token", token, "get", "pod", "timescaledb-0", "-n", NS).returncode == 0
    result = emu.kubectl("--token", token, "logs", "timescaledb-0", "-n", NS, check=False)
    assert result.stderr.strip() == (
        'Error from server (Forbidden): pods "timescaledb-0" is forbidden: User '
        '"system:serviceaccount:trading:pods-only" cannot get resource "pods/log" in API group '
        '"" in the namespace "trading"'
    )


def test_a_clusterrole_bound_by_a_rolebinding_applies_in_that_namespace_only(
    emu: Emulator,
) -> None:
    _apply(
        emu,
        _role(
            "irlib-test-pod-reader",
            [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}],
            kind="ClusterRole",
        ),
        _binding(
            "traders-read-pods",
            "irlib-test-pod-reader",
            [{"kind": "Group", "name": "traders", "apiGroup": "rbac.authorization.k8s.io"}],
            role_kind="ClusterRole",
        ),
    )
    as_jane = ("--as", "jane", "--as-group", "traders")
    assert _can_i(emu, "list", "pods", "-n", NS, *as_jane) == "yes"
    assert _can_i(emu, "list", "pods", "-n", "default", *as_jane) == "no"
    assert _can_i(emu, "list", "pods", "-n", NS, "--as", "jane") == "no"  # not in the group
    assert emu.kubectl("get", "pods", "-n", NS, *as_jane).returncode == 0
    refused = emu.kubectl("get", "pods", "-n", "default", *as_jane, check=False)
    assert refused.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource '
        '"pods" in API group "" in the namespace "default"'
    )
    whoami = emu.kubectl("auth", "whoami", *as_jane).stdout
    assert re.search(r"Groups\s+\[traders system:authenticated\]", whoami)
    wide = emu.kubectl("get", "rolebinding", "traders-read-pods", "-n", NS, "-o", "wide").stdout
    assert re.search(r"traders-read-pods\s+ClusterRole/irlib-test-pod-reader\s+\S+\s+traders", wide)


def test_only_the_admin_may_impersonate(emu: Emulator, drill: str) -> None:
    as_drill = emu.kubectl("get", "pods", "-n", NS, "--as", _user("irlib-drill"))
    assert as_drill.returncode == 0
    refused = emu.kubectl("get", "nodes", "--as", _user("irlib-drill"), check=False)
    assert refused.stderr.strip() == f"Error from server (Forbidden): {FORBIDDEN[0][1]}"
    escalate = emu.kubectl("--token", drill, "get", "pods", "-n", NS, "--as", "admin", check=False)
    assert escalate.stderr.strip() == (
        'Error from server (Forbidden): users "admin" is forbidden: User '
        '"system:serviceaccount:trading:irlib-drill" cannot impersonate resource "users" in API '
        'group "" at the cluster scope'
    )


def test_rbac_objects_are_stored_listed_and_deleted(emu: Emulator) -> None:
    emu.kubectl("create", "role", "irlib-test-made", "-n", NS, "--verb=get", "--resource=pods")
    made = json.loads(emu.kubectl("get", "role", "irlib-test-made", "-n", NS, "-o", "json").stdout)
    assert made["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    assert "generateName" not in made["metadata"]
    emu.kubectl(
        "create", "rolebinding", "irlib-test-made", "-n", NS, "--role=irlib-test-made",
        "--serviceaccount=trading:default",
    )  # fmt: skip
    roles = emu.kubectl("get", "roles", "-n", NS).stdout
    assert re.search(r"^irlib-test-made\s+\d{4}-\d\d-\d\dT", roles, re.M)
    bindings = emu.kubectl("get", "rolebindings", "-n", NS).stdout
    assert re.search(r"^irlib-test-made\s+Role/irlib-test-made\s", bindings, re.M)
    assert _can_i(emu, "get", "pods", "-n", NS, "--as", _user("default")) == "yes"
    # a binding's roleRef cannot change, as the apiserver refuses
    changed = _binding("irlib-test-made", "another-role", [_sa("default")])
    cmd = emu.command("apply", "-f", "-")
    result = subprocess.run(
        cmd, input=yaml.safe_dump(changed), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "cannot change roleRef" in result.stderr
    # the role deleted, its binding names a missing role: RBAC says so in the refusal
    emu.kubectl("delete", "role", "irlib-test-made", "-n", NS)
    gone = emu.kubectl("get", "role", "irlib-test-made", "-n", NS, check=False)
    assert 'roles.rbac.authorization.k8s.io "irlib-test-made" not found' in gone.stderr
    answer = emu.kubectl(
        "auth", "can-i", "get", "pods", "-n", NS, "--as", _user("default"), check=False
    ).stdout.strip()
    assert answer == 'no - RBAC: role.rbac.authorization.k8s.io "irlib-test-made" not found'
    emu.kubectl("delete", "rolebinding", "irlib-test-made", "-n", NS)


def test_discovery_lists_the_rbac_and_review_groups(emu: Emulator) -> None:
    resources = emu.kubectl("api-resources", "-o", "name").stdout.split()
    for name in (
        "serviceaccounts",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    ):
        assert name in resources, name
    accounts = emu.kubectl("get", "serviceaccounts", "-A").stdout
    assert re.search(r"^trading\s+default\s+0\s", accounts, re.M)


def test_nobody_grants_rights_they_do_not_hold(emu: Emulator) -> None:
    token = _account(emu, "role-maker")
    makes = {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["create", "get"],
    }
    reads = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
    _apply(
        emu,
        _role("role-maker", [makes, reads]),
        _binding("role-maker", "role-maker", [_sa("role-maker")]),
        _role("pods-admin", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
    )
    maker = ("--token", token, "-n", NS)
    emu.kubectl(*maker, "create", "role", "maker-reads", "--verb=get", "--resource=pods")
    emu.kubectl(*maker, "create", "rolebinding", "maker-reads", "--role=maker-reads",
                "--serviceaccount=trading:default")  # fmt: skip
    more = emu.kubectl(
        *maker, "create", "role", "maker-deletes", "--verb=get,delete", "--resource=pods",
        check=False,
    )  # fmt: skip
    assert more.returncode == 1
    assert (
        'roles.rbac.authorization.k8s.io "maker-deletes" is forbidden: user '
        '"system:serviceaccount:trading:role-maker"'
    ) in more.stderr
    assert "is attempting to grant RBAC permissions not currently held" in more.stderr
    assert '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}' in more.stderr
    bind = (
        "create",
        "rolebinding",
        "maker-admin",
        "--role=pods-admin",
        "--serviceaccount=trading:default",
    )
    refused = emu.kubectl(*maker, *bind, check=False)
    assert refused.returncode == 1 and "not currently held" in refused.stderr
    # the `bind` verb on that role is what lets one bind it without holding its rights
    _apply(
        emu,
        _role(
            "role-maker-bind",
            [
                {
                    "apiGroups": ["rbac.authorization.k8s.io"],
                    "resources": ["roles"],
                    "resourceNames": ["pods-admin"],
                    "verbs": ["bind"],
                }
            ],
        ),
        _binding("role-maker-bind", "role-maker-bind", [_sa("role-maker")]),
    )
    emu.kubectl(*maker, *bind)
