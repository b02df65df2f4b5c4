"""What every lab fault is built from: the `Fault` record, and the few ways a
fault talks to the lab (its Kubernetes API, the api-service's health, waiting for a condition).

The fault modules (faults_unavailable, faults_execution, faults_latency, faults_calibration)
import only this; `irlib.lab.faults` imports them all and is what the CLI and the drills use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from irlib.errors import LabError
from irlib.lab.kube.access import admin_request
from irlib.lab.lab import Lab

P1_UNAVAILABLE = "p1_system_unavailable"
API_DEPLOYMENT = "api-service"


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Callable[[Lab], object]
    clear: Callable[[Lab], object]
    visible: Callable[[Lab], bool]  # true once the fault shows where production would show it
    runbook: str = P1_UNAVAILABLE
    stops: str | None = None  # the lab part this fault keeps stopped


def wait(what: str, ready: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll `ready` every 0.25 s; LabError naming `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.25)
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")


def kube(
    lab: Lab, method: str, path: str, body: dict | None = None, patch: str = "strategic-merge-patch"
) -> httpx.Response:
    """One request to the lab's Kubernetes API as its admin (TLS, bearer token)."""
    headers = {"Content-Type": f"application/{patch}+json"} if body is not None else {}
    resp = admin_request(lab.config, method, path, json=body, headers=headers, timeout=5)
    resp.raise_for_status()
    return resp


def deployment_path(lab: Lab, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{lab.config.namespace}/deployments/{name}"


def container(lab: Lab, deployment: str) -> dict:
    """The deployment's first container, as its pod template says now."""
    dep = kube(lab, "GET", deployment_path(lab, deployment)).json()
    return dep["spec"]["template"]["spec"]["containers"][0]


def patch_container(lab: Lab, deployment: str, change: dict, cause: str) -> None:
    """A new rollout of `deployment` with `change` to its container, recorded as `cause`."""
    name = container(lab, deployment)["name"]
    kube(
        lab,
        "PATCH",
        deployment_path(lab, deployment),
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [{"name": name, **change}]}}},
        },
    )


def pods(lab: Lab, app: str) -> list[dict]:
    path = f"/api/v1/namespaces/{lab.config.namespace}/pods?labelSelector=app%3D{app}"
    return kube(lab, "GET", path).json()["items"]


def api_5xx(lab: Lab) -> bool:
    """The api-service's /health answers 5xx (not: it is unreachable)."""
    try:
        code = httpx.get(lab.config.url("api") + "/health", timeout=2).status_code
    except httpx.HTTPError:
        return False
    return code >= 500
