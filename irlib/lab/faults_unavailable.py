"""The lab faults of the P1 "System Unavailable" runbook: a bad deploy that crash-loops, an
OOM-killed api-service, a NotReady node, unschedulable pods, and the platform's parts
(PostgreSQL, Redis, the broker, market data) stopped. Listed in FAULTS.
"""

from __future__ import annotations

import time

from irlib.lab.config import read_control, update_control
from irlib.lab.fault_kit import (
    API_DEPLOYMENT,
    Fault,
    api_5xx,
    container,
    deployment_path,
    kube,
    patch_container,
    pods,
)
from irlib.lab.lab import PARTS_BY_NAME, Lab

FAULTS: list[Fault] = []  # this runbook's faults, in the order `irlib lab faults` lists them

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


def _inject_bad_deploy(lab: Lab) -> None:
    previous = container(lab, API_DEPLOYMENT)["image"]
    update_control(
        lab.config,
        lambda c: c.update(
            {
                "crashing_images": {
                    BAD_IMAGE: {"reason": "Error", "exit_code": 1, "log": BAD_IMAGE_LOG}
                },
                "bad_deploy": {"previous_image": previous},
            }
        ),
    )
    patch_container(
        lab,
        API_DEPLOYMENT,
        {"image": BAD_IMAGE},
        f"deploy api-service {BAD_IMAGE.rsplit(':', 1)[1]}",
    )


def _bad_deploy_visible(lab: Lab) -> bool:
    """The API answers 5xx and the new pods have crashed at least once (previous logs exist)."""
    return api_5xx(lab) and any(
        cs.get("restartCount", 0) > 0 and cs.get("image") == BAD_IMAGE
        for p in pods(lab, API_DEPLOYMENT)
        for cs in p["status"].get("containerStatuses", [])
    )


def _clear_bad_deploy(lab: Lab) -> None:
    control = read_control(lab.config)
    if container(lab, API_DEPLOYMENT)["image"] == BAD_IMAGE:  # nobody rolled back yet
        previous = control["bad_deploy"]["previous_image"]
        patch_container(
            lab,
            API_DEPLOYMENT,
            {"image": previous},
            f"roll back api-service to {previous.rsplit(':', 1)[1]}",
        )
    update_control(
        lab.config, lambda c: (c.pop("crashing_images", None), c.pop("bad_deploy", None))
    )


FAULTS.append(
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
        container(lab, API_DEPLOYMENT).get("resources", {}).get("limits", {}).get("memory", "1Gi")
    )
    update_control(
        lab.config,
        lambda c: (
            c.update({"oom_killed": {API_DEPLOYMENT: limit}}) if on else c.pop("oom_killed", None)
        ),
    )


def _oom_visible(lab: Lab) -> bool:
    return api_5xx(lab) and any(
        cs.get("lastState", {}).get("terminated", {}).get("reason") == "OOMKilled"
        for p in pods(lab, API_DEPLOYMENT)
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
        deployment_path(lab, API_DEPLOYMENT),
        {"spec": {"template": {"metadata": {"annotations": restarted}}}},
    )


FAULTS.append(
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
    update_control(
        lab.config,
        lambda c: (
            c.update({"not_ready_nodes": [NOT_READY_NODE]})
            if not_ready
            else c.pop("not_ready_nodes", None)
        ),
    )


def _node_not_ready_visible(lab: Lab) -> bool:
    node = kube(lab, "GET", f"/api/v1/nodes/{NOT_READY_NODE}").json()
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    return bool(ready) and ready[0]["status"] != "True"


FAULTS.append(
    Fault(
        "node-not-ready",
        f"{NOT_READY_NODE} stops posting status: NotReady, its pods not ready",
        lambda lab: _set_node(lab, True),
        lambda lab: _set_node(lab, False),
        _node_not_ready_visible,
    )
)


def _inject_pods_pending(lab: Lab) -> None:
    requests = container(lab, API_DEPLOYMENT).get("resources", {}).get("requests", {})
    update_control(
        lab.config, lambda c: c.update({"pods_pending": {"previous_requests": requests}})
    )
    patch_container(
        lab,
        API_DEPLOYMENT,
        {"resources": {"requests": {"cpu": PENDING_CPU}}},
        f"raise api-service CPU request to {PENDING_CPU}",
    )


def _clear_pods_pending(lab: Lab) -> None:
    control = read_control(lab.config)
    requests = container(lab, API_DEPLOYMENT).get("resources", {}).get("requests", {})
    if requests.get("cpu") == PENDING_CPU:
        previous = control["pods_pending"]["previous_requests"]
        patch_container(
            lab,
            API_DEPLOYMENT,
            {"resources": {"requests": previous}},
            "restore api-service CPU request",
        )
    update_control(lab.config, lambda c: c.pop("pods_pending", None))


FAULTS.append(
    Fault(
        "pods-pending",
        "new api-service pods unschedulable: insufficient CPU on every node",
        _inject_pods_pending,
        _clear_pods_pending,
        lambda lab: any(p["status"].get("phase") == "Pending" for p in pods(lab, API_DEPLOYMENT)),
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


FAULTS.append(
    _stopped_part_fault(
        "database-down", "postgres", "PostgreSQL (timescaledb-0) stopped: connections refused"
    )
)
FAULTS.append(_stopped_part_fault("redis-down", "redis", "Redis (redis-0) stopped: PING fails"))
FAULTS.append(
    _stopped_part_fault("broker-down", "broker", "the external broker API is unreachable")
)
FAULTS.append(
    _stopped_part_fault(
        "market-data-down", "market_data", "the external market-data provider is unreachable"
    )
)
