"""Named faults of the drill lab: each breaks the platform the way one real cause would.

A fault is named after the cause a runbook must diagnose and says which runbook that is.
Adding one is local: write its inject/clear (and what makes it visible) and register it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from irlib.errors import LabError, LabNotRunning, UsageError
from irlib.lab.config import read_control, write_control
from irlib.lab.lab import PARTS_BY_NAME, Lab

P1_UNAVAILABLE = "p1_system_unavailable"
API_DEPLOYMENT = "api-service"
BAD_IMAGE = "registry.example.com/trading/api-service:1.9.0"
BAD_IMAGE_LOG = [
    "INFO starting api-service 1.9.0 on :8080",
    "Traceback (most recent call last):",
    '  File "/app/quant_trading/api/main.py", line 42, in <module>',
    "    settings = Settings.from_env()",
    '  File "/app/quant_trading/config.py", line 88, in from_env',
    '    pool_size=int(os.environ["TRADING_DB_POOL_SIZE"]),',
    "KeyError: 'TRADING_DB_POOL_SIZE'",
]
PENDING_CPU = "8"  # more than any lab node can allocate (4 cores each)


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Callable[[Lab], object]
    clear: Callable[[Lab], object]
    visible: Callable[[Lab], bool]  # true once the fault shows where production would show it
    runbook: str = P1_UNAVAILABLE
    stops: str | None = None  # the lab part this fault keeps stopped


FAULTS: dict[str, Fault] = {}


def register(fault: Fault) -> Fault:
    FAULTS[fault.name] = fault
    return fault


def get_fault(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        raise UsageError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}") from None


def active_faults(lab: Lab) -> list[str]:
    return list(read_control(lab.config).get("faults", []))


def stopped_parts(lab: Lab) -> set[str]:
    """Parts that an active fault keeps down, so that `irlib lab up` does not heal them."""
    return {part for f in active_faults(lab) if f in FAULTS and (part := FAULTS[f].stops)}


def inject(lab: Lab, name: str, timeout: float = 45.0) -> bool:
    """Break the lab with fault `name`; False when it was already injected."""
    fault = get_fault(name)
    if not lab.is_up():
        raise LabNotRunning(
            f"the lab in {lab.state_dir} is not running: start it with `irlib lab up`"
        )
    if name in active_faults(lab):
        return False
    fault.inject(lab)
    _update_control(lab, lambda c: c.setdefault("faults", []).append(name))
    _wait(f"fault {name} to show", lambda: fault.visible(lab), timeout)
    return True


def clear(lab: Lab, name: str | None = None, timeout: float = 60.0) -> list[str]:
    """Heal fault `name`, or every active fault; returns what was cleared."""
    if name is not None:
        get_fault(name)
    if not lab.is_up():
        raise LabNotRunning(f"the lab in {lab.state_dir} is not running")
    names = [n for n in active_faults(lab) if name in (None, n)]
    for n in names:
        FAULTS[n].clear(lab)
        _update_control(lab, partial(_forget, n))
    if names:
        _wait("the lab to be healthy again", lambda: healthy(lab), timeout)
    return names


def healthy(lab: Lab) -> bool:
    """Every part answers well and every pod of the namespace is ready."""
    status = lab.status()
    if any(status[p]["state"] != "ready" for p in PARTS_BY_NAME):
        return False
    pods = kube(lab, "GET", f"/api/v1/namespaces/{lab.config.namespace}/pods").json()["items"]
    return all(_pod_ready(p) for p in pods)


def _pod_ready(pod: dict) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _forget(name: str, control: dict[str, Any]) -> None:
    control["faults"].remove(name)


def _update_control(lab: Lab, change: Callable[[dict], object]) -> None:
    control = read_control(lab.config)
    change(control)
    write_control(lab.config, control)


def _wait(what: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.25)
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- talking to the lab ---------------------------------------------------------------------


def kube(
    lab: Lab, method: str, path: str, body: dict | None = None, patch: str = "strategic-merge-patch"
) -> httpx.Response:
    headers = {"Content-Type": f"application/{patch}+json"} if body is not None else {}
    resp = httpx.request(
        method, lab.config.url("kubernetes") + path, json=body, headers=headers, timeout=5
    )
    resp.raise_for_status()
    return resp


def _deployment_path(lab: Lab, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{lab.config.namespace}/deployments/{name}"


def _container(lab: Lab, deployment: str) -> dict:
    dep = kube(lab, "GET", _deployment_path(lab, deployment)).json()
    return dep["spec"]["template"]["spec"]["containers"][0]


def _patch_container(lab: Lab, deployment: str, change: dict, cause: str) -> None:
    name = _container(lab, deployment)["name"]
    kube(
        lab,
        "PATCH",
        _deployment_path(lab, deployment),
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [{"name": name, **change}]}}},
        },
    )


def _api_status(lab: Lab) -> int | None:
    try:
        return httpx.get(lab.config.url("api") + "/health", timeout=2).status_code
    except httpx.HTTPError:
        return None


def _api_5xx(lab: Lab) -> bool:
    code = _api_status(lab)
    return code is not None and code >= 500


def _pods(lab: Lab, app: str) -> list[dict]:
    path = f"/api/v1/namespaces/{lab.config.namespace}/pods?labelSelector=app%3D{app}"
    return kube(lab, "GET", path).json()["items"]


# -- the faults ------------------------------------------------------------------------------


def _inject_bad_deploy(lab: Lab) -> None:
    previous = _container(lab, API_DEPLOYMENT)["image"]
    _update_control(
        lab,
        lambda c: c.update(
            crashing_images={BAD_IMAGE: {"reason": "Error", "exit_code": 1, "log": BAD_IMAGE_LOG}},
            bad_deploy={"previous_image": previous},
        ),
    )
    _patch_container(
        lab,
        API_DEPLOYMENT,
        {"image": BAD_IMAGE},
        f"deploy api-service {BAD_IMAGE.rsplit(':', 1)[1]}",
    )


def _bad_deploy_visible(lab: Lab) -> bool:
    """The API answers 5xx and the new pods have crashed at least once (previous logs exist)."""
    return _api_5xx(lab) and any(
        cs.get("restartCount", 0) > 0 and cs.get("image") == BAD_IMAGE
        for p in _pods(lab, API_DEPLOYMENT)
        for cs in p["status"].get("containerStatuses", [])
    )


def _clear_bad_deploy(lab: Lab) -> None:
    control = read_control(lab.config)
    if _container(lab, API_DEPLOYMENT)["image"] == BAD_IMAGE:  # nobody rolled back yet
        previous = control["bad_deploy"]["previous_image"]
        _patch_container(
            lab,
            API_DEPLOYMENT,
            {"image": previous},
            f"roll back api-service to {previous.rsplit(':', 1)[1]}",
        )
    _update_control(lab, lambda c: (c.pop("crashing_images", None), c.pop("bad_deploy", None)))


register(
    Fault(
        "bad-deploy",
        "a new api-service revision whose pods crash-loop; the API answers 5xx",
        _inject_bad_deploy,
        _clear_bad_deploy,
        _bad_deploy_visible,
    )
)


def _set_oom(lab: Lab, on: bool) -> None:
    limit = (
        _container(lab, API_DEPLOYMENT).get("resources", {}).get("limits", {}).get("memory", "1Gi")
    )
    _update_control(
        lab,
        lambda c: c.update(oom_killed={API_DEPLOYMENT: limit}) if on else c.pop("oom_killed", None),
    )


def _oom_visible(lab: Lab) -> bool:
    return _api_5xx(lab) and any(
        cs.get("lastState", {}).get("terminated", {}).get("reason") == "OOMKilled"
        for p in _pods(lab, API_DEPLOYMENT)
        for cs in p["status"].get("containerStatuses", [])
    )


def _clear_oom(lab: Lab) -> None:
    _set_oom(lab, False)
    # What an operator does after raising the limit: `kubectl rollout restart`, so that no
    # pod keeps an OOMKilled last state from before the fix.
    restarted = {
        "kubectl.kubernetes.io/restartedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    }
    kube(
        lab,
        "PATCH",
        _deployment_path(lab, API_DEPLOYMENT),
        {"spec": {"template": {"metadata": {"annotations": restarted}}}},
    )


register(
    Fault(
        "oom-killed",
        "api-service containers killed for memory (OOMKilled), restarts climbing",
        lambda lab: _set_oom(lab, True),
        _clear_oom,
        _oom_visible,
    )
)

NOT_READY_NODE = "node-2"


def _set_node(lab: Lab, not_ready: bool) -> None:
    _update_control(
        lab,
        lambda c: (
            c.update(not_ready_nodes=[NOT_READY_NODE])
            if not_ready
            else c.pop("not_ready_nodes", None)
        ),
    )


def _node_not_ready_visible(lab: Lab) -> bool:
    node = kube(lab, "GET", f"/api/v1/nodes/{NOT_READY_NODE}").json()
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    return bool(ready) and ready[0]["status"] != "True"


register(
    Fault(
        "node-not-ready",
        f"{NOT_READY_NODE} stops posting status: NotReady, its pods not ready",
        lambda lab: _set_node(lab, True),
        lambda lab: _set_node(lab, False),
        _node_not_ready_visible,
    )
)


def _inject_pods_pending(lab: Lab) -> None:
    requests = _container(lab, API_DEPLOYMENT).get("resources", {}).get("requests", {})
    _update_control(lab, lambda c: c.update(pods_pending={"previous_requests": requests}))
    _patch_container(
        lab,
        API_DEPLOYMENT,
        {"resources": {"requests": {"cpu": PENDING_CPU}}},
        f"raise api-service CPU request to {PENDING_CPU}",
    )


def _clear_pods_pending(lab: Lab) -> None:
    control = read_control(lab.config)
    requests = _container(lab, API_DEPLOYMENT).get("resources", {}).get("requests", {})
    if requests.get("cpu") == PENDING_CPU:
        previous = control["pods_pending"]["previous_requests"]
        _patch_container(
            lab,
            API_DEPLOYMENT,
            {"resources": {"requests": previous}},
            "restore api-service CPU request",
        )
    _update_control(lab, lambda c: c.pop("pods_pending", None))


register(
    Fault(
        "pods-pending",
        "new api-service pods unschedulable: insufficient CPU on every node",
        _inject_pods_pending,
        _clear_pods_pending,
        lambda lab: any(p["status"].get("phase") == "Pending" for p in _pods(lab, API_DEPLOYMENT)),
    )
)


def _stopped_part_fault(name: str, part: str, summary: str) -> Fault:
    return Fault(
        name,
        summary,
        inject=lambda lab: lab.stop_part(part),
        clear=lambda lab: lab.start_part(part),
        visible=lambda lab: not lab.running(part) and not PARTS_BY_NAME[part].answers(lab.config),
        stops=part,
    )


register(
    _stopped_part_fault(
        "database-down", "postgres", "PostgreSQL (timescaledb-0) stopped: connections refused"
    )
)
register(_stopped_part_fault("redis-down", "redis", "Redis (redis-0) stopped: PING fails"))
register(_stopped_part_fault("broker-down", "broker", "the external broker API is unreachable"))
register(
    _stopped_part_fault(
        "market-data-down", "market_data", "the external market-data provider is unreachable"
    )
)

# Each scenario's faults live in their own module and register themselves on import.
from irlib.lab import faults_calibration, faults_execution, faults_latency  # noqa: E402,F401
