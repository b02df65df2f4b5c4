"""Guarded Kubernetes writes of the runbooks: rollback, delete a pod, scale a deployment,
rollout restart a deployment.

Each `plan_*` reads the cluster and returns the Plan shown before anything changes; each
`apply_*` makes the change and is only ever called by the guard. `wait_rollout` is
`kubectl rollout status`: what the runbook waits on before it re-checks health.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from irlib.guard import Plan
from irlib.k8s import permissions as P
from irlib.k8s._client import MERGE, Kube
from irlib.k8s.permissions import reads, writes

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"


def _history(kube: Kube, deployment: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    dep = kube.deployment(deployment)
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    uid = dep["metadata"]["uid"]
    owned = [
        rs
        for rs in kube.replicasets(selector)
        if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))
    ]
    owned.sort(key=lambda rs: -int(rs["metadata"].get("annotations", {}).get(REVISION, 0)))
    return dep, owned


def _images(template: dict[str, Any]) -> str:
    return ",".join(c["image"] for c in template["spec"]["containers"])


@reads(P.GET_DEPLOYMENT, P.LIST_REPLICASETS)
def plan_rollback(kube: Kube, deployment: str, *, recommended: bool = True) -> Plan:
    dep, owned = _history(kube, deployment)
    if len(owned) < 2:
        raise ValueError(f"deployment {deployment} has no previous revision to roll back to")
    current, previous = owned[0], owned[1]
    rev = previous["metadata"]["annotations"][REVISION]
    return Plan(
        id=f"rollback:{deployment}",
        summary=(
            f"roll {deployment} back from {_images(dep['spec']['template'])} to revision "
            f"{rev} ({_images(previous['spec']['template'])})"
        ),
        command=f"kubectl rollout undo deployment/{deployment} -n {kube.namespace}",
        before={
            "revision": current["metadata"]["annotations"].get(REVISION),
            "image": _images(dep["spec"]["template"]),
            "to_revision": rev,
        },
        recommended=recommended,
    )


@writes(P.GET_DEPLOYMENT, P.LIST_REPLICASETS, P.PATCH_DEPLOYMENT)
def apply_rollback(kube: Kube, deployment: str) -> dict[str, Any]:
    """What `kubectl rollout undo` does: put the previous ReplicaSet's template back."""
    _, owned = _history(kube, deployment)
    previous = owned[1]
    template = copy.deepcopy(previous["spec"]["template"])
    template["metadata"].get("labels", {}).pop("pod-template-hash", None)
    cause = previous["metadata"].get("annotations", {}).get(CHANGE_CAUSE)
    body: dict[str, Any] = {"spec": {"template": template}}
    if cause:
        body["metadata"] = {"annotations": {CHANGE_CAUSE: cause}}
    # a JSON merge patch replaces the template whole
    kube.patch_deployment(deployment, body, content_type=MERGE)
    return {
        "image": _images(template),
        "to_revision": previous["metadata"]["annotations"][REVISION],
    }


@reads(P.GET_POD)
def plan_delete_pod(kube: Kube, pod: str, *, recommended: bool = True) -> Plan:
    found = kube.pod(pod)
    owner: dict[str, Any] = next(iter(found["metadata"].get("ownerReferences", [])), {})
    return Plan(
        id=f"delete-pod:{pod}",
        summary=f"delete pod {pod}; its {owner.get('kind', 'controller')} "
        f"{owner.get('name', '')} creates a replacement",
        command=f"kubectl delete pod {pod} -n {kube.namespace}",
        before={"node": found["spec"].get("nodeName"), "owner": owner.get("name")},
        recommended=recommended,
    )


@writes(P.DELETE_POD)
def apply_delete_pod(kube: Kube, pod: str) -> dict[str, Any]:
    kube.delete_pod(pod)
    return {"deleted": pod}


@reads(P.GET_DEPLOYMENT)
def plan_scale(kube: Kube, deployment: str, replicas: int, *, recommended: bool = True) -> Plan:
    dep = kube.deployment(deployment)
    now = dep["spec"].get("replicas", 0)
    return Plan(
        id=f"scale:{deployment}={replicas}",
        summary=f"scale {deployment} from {now} to {replicas} replicas",
        command=f"kubectl scale deployment/{deployment} --replicas={replicas} -n {kube.namespace}",
        before={"replicas": now},
        recommended=recommended,
    )


@writes(P.PATCH_DEPLOYMENT_SCALE)
def apply_scale(kube: Kube, deployment: str, replicas: int) -> dict[str, Any]:
    kube.scale_deployment(deployment, replicas)
    return {"replicas": replicas}


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@reads(P.GET_DEPLOYMENT)
def plan_restart(kube: Kube, deployment: str, *, recommended: bool = True) -> Plan:
    dep = kube.deployment(deployment)
    annotations = dep["spec"]["template"].get("metadata", {}).get("annotations") or {}
    return Plan(
        id=f"restart:{deployment}",
        summary=f"rollout restart {deployment}: replace its {dep['spec'].get('replicas', 0)} "
        "pods with new ones of the same spec, one at a time",
        command=f"kubectl rollout restart deployment/{deployment} -n {kube.namespace}",
        before={
            "replicas": dep["spec"].get("replicas", 0),
            "restarted_at": annotations.get(RESTARTED_AT),
        },
        recommended=recommended,
    )


@writes(P.PATCH_DEPLOYMENT)
def apply_restart(kube: Kube, deployment: str) -> dict[str, Any]:
    """What `kubectl rollout restart` does: stamp the pod template, so a new ReplicaSet rolls."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kube.patch_deployment(
        deployment, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
    )
    return {"restarted_at": stamp}


@reads(P.GET_DEPLOYMENT)
def wait_rollout(kube: Kube, deployment: str, *, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until every replica is updated and available (`kubectl rollout status`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        dep = kube.deployment(deployment)
        st, want = dep.get("status", {}), dep["spec"].get("replicas", 0)
        done = (
            st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            and (st.get("updatedReplicas") or 0) >= want
            and (st.get("availableReplicas") or 0) >= want
            and (st.get("replicas") or 0) <= want
        )
        if done or time.monotonic() > deadline:
            return {
                "rolled_out": done,
                "available": st.get("availableReplicas") or 0,
                "replicas": want,
            }
        time.sleep(0.5)
