"""irlib inside the cluster it diagnoses, with least privilege, against the lab's Kubernetes API
(TLS, tokens, RBAC): `irlib deploy manifests` applied with kubectl; what the account may do
(`kubectl auth can-i`); the health drill with the account's token from a kubeconfig, and as the
CronJob runs it: its exact command from the installed wheel, as the image's non-root user,
with the token and CA laid out as the kubelet mounts them; a permission taken away; a
mitigation refused to the read-only account, then allowed by the opt-in mitigation Role.

First in its group (tests/conftest.py): the health drill reads the API's p99 over the seed's 5
minutes, which a latency fault of an earlier test would still hold.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from irlib.drills import schedule
from tests.helpers import (
    ROOT,
    LabHandle,
    irlib,
    mount_service_account,
    outside,
    require_binary,
    wait_until,
)

NS = "trading"
ACCOUNT = "irlib-drill"
AS = f"--as=system:serviceaccount:{NS}:{ACCOUNT}"
UID = 10001  # the image's user (Dockerfile)


def kubectl(
    lab: LabHandle, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [require_binary("kubectl", "kubectl"), "--kubeconfig", lab.exports["KUBECONFIG"], *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)


def manifests(lab: LabHandle, *extra: str) -> str:
    made = irlib(
        "deploy", "manifests", "--profile", lab.exports["IRLIB_PROFILE"], *extra, env=lab.env
    )
    assert made.returncode == 0, made.stderr
    return made.stdout


@pytest.fixture(scope="module")
def deployed(lab: LabHandle) -> Iterator[dict[str, Any]]:
    """The manifests applied as an operator would, and a token of the account (2 h)."""
    text = manifests(lab)
    applied = kubectl(lab, "apply", "-f", "-", stdin=text)
    try:
        assert applied.returncode == 0, applied.stderr
        token = kubectl(lab, "create", "token", ACCOUNT, "-n", NS, "--duration=2h")
        assert token.returncode == 0, token.stderr
        yield {
            "docs": [d for d in yaml.safe_load_all(text) if d],
            "applied": applied.stdout,
            "token": token.stdout.strip(),
        }
    finally:
        kubectl(
            lab,
            "delete",
            "-f",
            "-",
            "--ignore-not-found",
            stdin=manifests(lab, "--with-mitigations"),
        )


def test_the_manifests_apply_and_the_account_can_only_read(
    lab: LabHandle, deployed: dict[str, Any]
) -> None:
    for doc in deployed["docs"]:
        kind, name = doc["kind"].lower(), doc["metadata"]["name"]
        assert re.search(rf"^{kind}[./]\S*{name} created$", deployed["applied"], re.M), kind
    listed = kubectl(lab, "auth", "can-i", "--list", AS, "-n", NS)
    assert listed.returncode == 0, listed.stderr
    # rows of resources (a non-resource URL's row starts blank): the resource, its verbs
    rows = dict(re.findall(r"^(\S+)\s.*\[([^\]]*)\]\s*$", listed.stdout, re.M))
    # every authenticated user may ask about itself (the bootstrap policy), as on a cluster
    own = {r for r in rows if r.startswith(("selfsubject", "selfsubjectaccess"))}
    granted = {r: set(v.split()) for r, v in rows.items() if r not in own}
    assert granted and all(v and v <= {"get", "list"} for v in granted.values()), granted
    assert {"pods", "pods/log", "nodes", "deployments.apps"} <= set(granted), granted
    assert all(rows[r] == "create" for r in own), own
    refused = kubectl(lab, "auth", "can-i", "delete", "pods", AS, "-n", NS)
    assert refused.stdout.strip() == "no"


def _can_list(lab: LabHandle, account: str) -> str:
    listed = kubectl(lab, "auth", "can-i", "--list", f"--as=system:serviceaccount:{NS}:{account}",
                     "-n", NS)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_serves_account_can_do_the_reads_and_nothing_more(
    lab: LabHandle, deployed: dict[str, Any]
) -> None:
    """`--with-serve`: its account and bindings applied (not its Deployment: the lab would
    schedule a pod of an image it cannot run); it may do exactly what the drill's may."""
    docs = [d for d in yaml.safe_load_all(manifests(lab, "--with-serve")) if d]
    access = [d for d in docs if d["metadata"]["name"].startswith("irlib-serve")
              and d["kind"] in ("ServiceAccount", "RoleBinding", "ClusterRoleBinding")]  # fmt: skip
    assert len(access) == 3
    text = "---\n".join(yaml.safe_dump(d) for d in access)
    applied = kubectl(lab, "apply", "-f", "-", stdin=text)
    try:
        assert applied.returncode == 0, applied.stderr
        assert _can_list(lab, "irlib-serve") == _can_list(lab, ACCOUNT)
        serve = f"--as=system:serviceaccount:{NS}:irlib-serve"
        for verb, what in [("list", "pods"), ("get", "pods/log"), ("list", "nodes")]:
            assert (
                kubectl(lab, "auth", "can-i", verb, what, serve, "-n", NS).stdout.strip() == "yes"
            )
        for verb, what in [("delete", "pods"), ("patch", "deployments"), ("get", "secrets"),
                           ("create", "pods/exec")]:  # fmt: skip
            said = kubectl(lab, "auth", "can-i", verb, what, serve, "-n", NS).stdout.strip()
            assert said == "no", (verb, what)
    finally:
        kubectl(lab, "delete", "-f", "-", "--ignore-not-found", stdin=text)


def kubeconfig_of(lab: LabHandle, token: str, where: Path) -> Path:
    data = yaml.safe_load(Path(lab.exports["KUBECONFIG"]).read_text())
    data["users"][0]["user"] = {"token": token}
    path = where / "kubeconfig"
    path.write_text(yaml.safe_dump(data))
    return path


def profile_with(lab: LabHandle, where: Path, **kube: Any) -> Path:
    data = yaml.safe_load(Path(lab.exports["IRLIB_PROFILE"]).read_text())
    data["kubernetes"].update(kube)
    path = where / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def drill_results(stdout: str) -> dict[str, Any]:
    return json.loads((Path(stdout.strip().splitlines()[-1]) / "results.json").read_text())


def test_a_kubeconfig_with_the_accounts_token_serves_the_health_drill(
    lab: LabHandle, deployed: dict[str, Any], tmp_path: Path
) -> None:
    kubeconfig = kubeconfig_of(lab, deployed["token"], tmp_path)
    profile = profile_with(lab, tmp_path, kubeconfig=str(kubeconfig))
    done = irlib("drill", "health", "--profile", str(profile), "--outputs", str(tmp_path / "o"),
                 env=lab.env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results = drill_results(done.stdout)
    assert not [c for c in results["checks"] if c["status"] == "error"], results["checks"]


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV lines, as the image sets them."""
    text = (ROOT / "Dockerfile").read_text()
    block = re.search(r"^ENV (.*?)\n(?=\S)", text, re.M | re.S)
    assert block is not None
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


@pytest.fixture
def pod() -> Iterator[Path]:
    """A pod's file system for the image's user: outside pytest's root-only folders."""
    where = Path(tempfile.mkdtemp(prefix="irlib-pod-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


def test_the_cronjobs_command_runs_the_drill_as_the_images_user_in_cluster(
    lab: LabHandle, deployed: dict[str, Any], installed: Path, pod: Path
) -> None:
    """The container's exact command (its profile and evidence mounts mapped to folders here),
    the installed wheel in a venv outside the checkout, uid 10001, no kubeconfig anywhere: the
    in-cluster configuration from the mounted token and CA and KUBERNETES_SERVICE_*."""
    (pod / "etc").mkdir()
    by_kind = {d["kind"]: d for d in deployed["docs"]}
    (pod / "etc" / "profile.yaml").write_text(by_kind["ConfigMap"]["data"]["profile.yaml"])
    mount = mount_service_account(lab, pod, deployed["token"], NS)
    evidence, scratch = pod / "evidence", pod / "tmp"
    for folder in (evidence, scratch):
        folder.mkdir()
        os.chown(folder, UID, UID)
    for path in pod.rglob("*"):  # the volumes are readable by the pod's user
        path.chmod(0o755 if path.is_dir() else 0o644)
    spec = by_kind["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == ACCOUNT and spec["securityContext"]["runAsUser"] == UID
    command = [
        {schedule.PROFILE_DIR: str(pod / "etc"), schedule.EVIDENCE_DIR: str(evidence)}.get(a, a)
        .replace(f"{schedule.PROFILE_DIR}/", f"{pod / 'etc'}/")
        for a in spec["containers"][0]["command"]
    ]  # fmt: skip
    env = {k: v for k, v in outside(installed, lab.env).items() if k not in ("KUBECONFIG", "HOME")}
    env.update({k: v.replace("/tmp", str(scratch)) for k, v in image_env().items()})
    env.update(
        KUBERNETES_SERVICE_HOST=lab.lab.config.host,
        KUBERNETES_SERVICE_PORT=str(lab.lab.config.ports["kubernetes"]),
        IRLIB_K8S_TOKEN_FILE=str(mount / "token"),  # the kubelet's mount, laid out here
        IRLIB_K8S_CA_FILE=str(mount / "ca.crt"),
    )
    setpriv = require_binary("setpriv", "util-linux")
    t0 = time.monotonic()
    done = subprocess.run(
        [setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *command],
        capture_output=True, text=True, env=env, cwd=evidence, timeout=600,
    )  # fmt: skip
    print(f"health drill in-cluster style: {time.monotonic() - t0:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    results = drill_results(done.stdout)
    assert not [c for c in results["checks"] if c["status"] == "error"], results["checks"]
    # nothing written outside the evidence and the scratch folder
    written = {p for p in pod.rglob("*") if p.stat().st_uid == UID}
    assert all(p.is_relative_to(evidence) or p.is_relative_to(scratch) for p in written)


def test_without_pods_log_the_drill_fails_naming_it(
    lab: LabHandle, deployed: dict[str, Any], tmp_path: Path
) -> None:
    role = next(d for d in deployed["docs"] if d["kind"] == "Role")
    edited = {**role, "rules": [r for r in role["rules"] if r["resources"] != ["pods/log"]]}
    assert edited["rules"] != role["rules"]
    assert kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(edited)).returncode == 0
    try:
        kubeconfig = kubeconfig_of(lab, deployed["token"], tmp_path)
        profile = profile_with(lab, tmp_path, kubeconfig=str(kubeconfig))
        done = irlib("drill", "health", "--profile", str(profile), "--outputs",
                     str(tmp_path / "o"), env=lab.env, timeout=300)  # fmt: skip
    finally:
        assert kubectl(lab, "apply", "-f", "-", stdin=yaml.safe_dump(role)).returncode == 0
    assert done.returncode == 1, done.stdout + done.stderr
    errors = {c["check"]: c["summary"] for c in drill_results(done.stdout)["checks"]
              if c["status"] == "error"}  # fmt: skip
    assert errors and all("pods/log" in s for s in errors.values()), errors
    assert any(name.startswith("logs") for name in errors), errors


def api_pod(lab: LabHandle) -> str:
    pods = json.loads(
        kubectl(lab, "get", "pods", "-n", NS, "-l", "app=api-service", "-o", "json").stdout
    )
    return sorted(p["metadata"]["name"] for p in pods["items"])[0]


def test_a_mitigation_is_refused_to_the_read_only_account_and_done_with_its_role(
    lab: LabHandle, deployed: dict[str, Any], tmp_path: Path
) -> None:
    kubeconfig = kubeconfig_of(lab, deployed["token"], tmp_path)
    profile = profile_with(lab, tmp_path, kubeconfig=str(kubeconfig))
    pod = api_pod(lab)

    def delete(outputs: str) -> dict[str, Any]:
        done = irlib("run", "p1_system_unavailable", "--profile", str(profile), "--outputs",
                     str(tmp_path / outputs), "--confirm", f"delete-pod:{pod}", env=lab.env,
                     timeout=300)  # fmt: skip
        attempts = [m for m in drill_results(done.stdout)["mitigations"]
                    if m["id"] == f"delete-pod:{pod}" and m["outcome"] != "planned"]  # fmt: skip
        assert len(attempts) == 1, attempts
        return attempts[0]  # type: ignore[no-any-return]

    refused = delete("read-only")
    assert refused["outcome"] == "failed", refused
    assert "forbidden: cannot delete pods in namespace trading" in refused["detail"], refused
    assert pod in kubectl(lab, "get", "pods", "-n", NS, "-o", "name").stdout  # nothing changed
    granted = kubectl(lab, "apply", "-f", "-", stdin=manifests(lab, "--with-mitigations"))
    assert granted.returncode == 0, granted.stderr
    try:
        done = delete("granted")
        assert done["outcome"] == "executed", done
        wait_until(
            f"{pod} gone",
            lambda: pod not in kubectl(lab, "get", "pods", "-n", NS, "-o", "name").stdout,
        )
    finally:
        kubectl(lab, "delete", "role,rolebinding", f"{ACCOUNT}-mitigate", "-n", NS)
        wait_until("api-service ready again", lambda: _ready(lab))


def _ready(lab: LabHandle) -> bool:
    dep = json.loads(
        kubectl(lab, "get", "deployment", "api-service", "-n", NS, "-o", "json").stdout
    )
    return dep["status"].get("readyReplicas", 0) >= dep["spec"]["replicas"]
