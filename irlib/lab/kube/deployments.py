"""The deployment controller: a ReplicaSet per pod template (`<name>-<hash>`, revision
annotations, re-numbered on rollback), rollouts, and the status `kubectl rollout` reads.
Old ReplicaSets go to 0 once the new pods run (not Pending): a bad image takes the service
down, an unschedulable template leaves the old pods serving.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from irlib.lab.kube import defaults
from irlib.lab.kube.context import DEPLOYMENTS, PODS, REPLICASETS, Context
from irlib.lab.kube.meta import (
    Obj,
    owner_ref,
    parse_time,
    prune,
    random_suffix,
    rfc3339,
    set_condition,
    template_hash,
)
from irlib.lab.kube.workloads import owned

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# deployment annotations that are not copied onto its ReplicaSets (kubectl's list)
NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}


def _comparable(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return prune(t)


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def max_surge(dep: Obj) -> int:
    rolling = (dep["spec"].get("strategy") or {}).get("rollingUpdate") or {}
    return _percent(rolling.get("maxSurge", "25%"), dep["spec"].get("replicas", 1), True)


def max_unavailable(dep: Obj) -> int:
    strategy = dep["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    rolling = strategy.get("rollingUpdate") or {}
    return _percent(rolling.get("maxUnavailable", "25%"), dep["spec"].get("replicas", 1), False)


def sync_deployments(ctx: Context) -> None:
    for dep in list(ctx.store.all(DEPLOYMENTS)):
        with ctx.health.guard("deployments", dep):
            _sync_deployment(ctx, dep)


def _scale(ctx: Context, dep: Obj, rs: Obj, replicas: int) -> None:
    old = rs["spec"].get("replicas", 0)
    if old == replicas:
        return
    obj = ctx.store.get_copy(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])
    if obj is None:
        return
    obj["spec"]["replicas"] = replicas
    annotations = obj["metadata"].setdefault("annotations", {})
    annotations["deployment.kubernetes.io/desired-replicas"] = str(dep["spec"]["replicas"])
    annotations["deployment.kubernetes.io/max-replicas"] = str(
        dep["spec"]["replicas"] + max_surge(dep)
    )
    ctx.store.update(REPLICASETS, obj)
    direction = "up" if replicas > old else "down"
    ctx.recorder.record(
        dep,
        "Normal",
        "ScalingReplicaSet",
        f"Scaled {direction} replica set {obj['metadata']['name']} from {old} to {replicas}",
        "deployment-controller",
    )


def _new_replicaset(ctx: Context, dep: Obj, rs_list: list[Obj]) -> Obj:
    """The ReplicaSet of the deployment's current template, made or re-numbered."""
    want = _comparable(dep["spec"]["template"])
    top = max((revision(r) for r in rs_list), default=0)
    match = next((r for r in rs_list if _comparable(r["spec"]["template"]) == want), None)
    copied = {
        k: v for k, v in (dep["metadata"].get("annotations") or {}).items() if k not in NOT_COPIED
    }
    if match is None:
        pod_hash = template_hash(dep["spec"]["template"])
        template = copy.deepcopy(dep["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(dep["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        name = dep["metadata"]["name"]
        rs = {
            "metadata": {
                "name": f"{name}-{pod_hash}",
                "namespace": dep["metadata"]["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    **copied,
                    "deployment.kubernetes.io/desired-replicas": str(dep["spec"]["replicas"]),
                    "deployment.kubernetes.io/max-replicas": str(
                        dep["spec"]["replicas"] + max_surge(dep)
                    ),
                    REVISION: str(top + 1),
                },
                "ownerReferences": [owner_ref(dep)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if ctx.store.get(REPLICASETS, dep["metadata"]["namespace"], rs["metadata"]["name"]):
            rs["metadata"]["name"] += f"-{random_suffix()}"  # a hash collision
        return ctx.store.create(REPLICASETS, defaults.apply_defaults("ReplicaSet", rs))
    annotations = dict(match["metadata"].get("annotations") or {})
    changed = False
    if revision(match) < top:
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        history.append(str(revision(match)))
        annotations[REVISION_HISTORY] = ",".join(history)
        annotations[REVISION] = str(top + 1)
        changed = True
    for k, v in copied.items():
        if annotations.get(k) != v:
            annotations[k] = v
            changed = True
    if not changed:
        return match
    obj = copy.deepcopy(match)
    obj["metadata"]["annotations"] = annotations
    return ctx.store.update(REPLICASETS, obj)


def _sync_deployment(ctx: Context, dep: Obj) -> None:
    ns = dep["metadata"]["namespace"]
    rs_list = owned(ctx, REPLICASETS, dep)
    new = _new_replicaset(ctx, dep, rs_list)
    old = [
        r for r in owned(ctx, REPLICASETS, dep) if r["metadata"]["uid"] != new["metadata"]["uid"]
    ]
    replicas = dep["spec"].get("replicas", 1)
    if not dep["spec"].get("paused"):
        _scale(ctx, dep, new, replicas)
        new = ctx.store.get(REPLICASETS, ns, new["metadata"]["name"]) or new
        new_pods = [p for p in owned(ctx, PODS, new) if not p["metadata"].get("deletionTimestamp")]
        started = sum(1 for p in new_pods if p.get("status", {}).get("phase") == "Running")
        # Old pods go once the new ones run (not Pending), even if those then crash: that is
        # how a bad image takes the service down. Unschedulable new pods keep the old ones.
        if started >= replicas:
            for rs in old:
                _scale(ctx, dep, rs, 0)
        _cleanup(ctx, dep, new)
    dep = ctx.store.get(DEPLOYMENTS, ns, dep["metadata"]["name"]) or dep
    annotations = dict(dep["metadata"].get("annotations") or {})
    if annotations.get(REVISION) != str(revision(new)):
        obj = copy.deepcopy(dep)
        annotations[REVISION] = str(revision(new))
        obj["metadata"]["annotations"] = annotations
        ctx.store.update(DEPLOYMENTS, obj)


def _cleanup(ctx: Context, dep: Obj, new: Obj) -> None:
    limit = dep["spec"].get("revisionHistoryLimit", 10)
    idle = sorted(
        (
            r
            for r in owned(ctx, REPLICASETS, dep)
            if r["metadata"]["uid"] != new["metadata"]["uid"]
            and r["spec"].get("replicas", 0) == 0
            and r.get("status", {}).get("replicas", 0) == 0
        ),
        key=revision,
    )
    for rs in idle[: max(len(idle) - limit, 0)]:
        ctx.store.delete(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"])


def deployment_status(ctx: Context) -> None:
    now = ctx.clock()
    stamp = rfc3339(now)
    for dep in list(ctx.store.all(DEPLOYMENTS)):
        with ctx.health.guard("deployment-status", dep):
            rs_list = owned(ctx, REPLICASETS, dep)
            want = _comparable(dep["spec"]["template"])
            new = next((r for r in rs_list if _comparable(r["spec"]["template"]) == want), None)
            replicas = dep["spec"].get("replicas", 1)

            def total(rs_items: list[Obj], field: str) -> int:
                return sum(r.get("status", {}).get(field, 0) or 0 for r in rs_items)

            status: Obj = {"observedGeneration": dep["metadata"].get("generation", 1)}
            status["replicas"] = total(rs_list, "replicas")
            status["updatedReplicas"] = total([new], "replicas") if new else 0
            status["readyReplicas"] = total(rs_list, "readyReplicas")
            status["availableReplicas"] = total(rs_list, "availableReplicas")
            desired = sum(r["spec"].get("replicas", 0) for r in rs_list)
            status["unavailableReplicas"] = max(desired - status["availableReplicas"], 0)
            conds = copy.deepcopy(dep.get("status", {}).get("conditions") or [])
            if status["availableReplicas"] >= replicas - max_unavailable(dep):
                set_condition(
                    conds,
                    "Available",
                    "True",
                    stamp,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                    update_time=True,
                )
            else:
                set_condition(
                    conds,
                    "Available",
                    "False",
                    stamp,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    update_time=True,
                )
            rs_name = new["metadata"]["name"] if new else dep["metadata"]["name"]
            complete = (
                new is not None
                and status["updatedReplicas"] == replicas
                and status["replicas"] == replicas
                and status["availableReplicas"] >= replicas
            )
            old_prog = next((c for c in conds if c["type"] == "Progressing"), None)
            progress = (status["updatedReplicas"], status["availableReplicas"], status["replicas"])
            old_status = dep.get("status", {})
            moved = progress != tuple(
                old_status.get(k, 0) for k in ("updatedReplicas", "availableReplicas", "replicas")
            )
            if complete:
                set_condition(
                    conds,
                    "Progressing",
                    "True",
                    stamp,
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                    update_time=True,
                )
            elif (
                old_prog is not None
                and old_prog.get("reason") != "NewReplicaSetAvailable"
                and not moved
                and now - (parse_time(old_prog.get("lastUpdateTime")) or now)
                > dep["spec"].get("progressDeadlineSeconds", 600)
            ):
                set_condition(
                    conds,
                    "Progressing",
                    "False",
                    stamp,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    update_time=True,
                )
            else:
                set_condition(
                    conds,
                    "Progressing",
                    "True",
                    stamp,
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    update_time=True,
                )
                if moved:
                    next(c for c in conds if c["type"] == "Progressing")["lastUpdateTime"] = stamp
            conds.sort(key=lambda c: 0 if c["type"] == "Available" else 1)
            status["conditions"] = conds
            obj = copy.deepcopy(dep)
            obj["status"] = {
                k: v
                for k, v in status.items()
                if v or k == "observedGeneration" or k == "conditions"
            }
            ctx.store.update(DEPLOYMENTS, obj)
