"""The controller-manager's loops: Deployment -> ReplicaSet -> Pod, StatefulSet -> Pod,
Service -> Endpoints, and garbage collection of objects whose owner is gone.

Rollouts follow what kubectl reads: ReplicaSets named `<deployment>-<pod-template-hash>`,
revision annotations (an old template rolled back to is re-numbered, its old number kept in
`revision-history`), controller ownerReferences, Scaling/SuccessfulCreate events.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from irlib.lab.kube import defaults
from irlib.lab.kube.context import (
    DEPLOYMENTS,
    ENDPOINTS,
    PODS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    Context,
)
from irlib.lab.kube.meta import (
    Obj,
    controller_of,
    owner_ref,
    parse_time,
    pod_ready,
    prune,
    random_suffix,
    rfc3339,
    set_condition,
    template_hash,
)
from irlib.lab.kube.resources import BY_KIND
from irlib.lab.kube.selectors import selector_matcher

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# deployment annotations that are not copied onto its ReplicaSets (kubectl's list)
NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}


def owned(ctx: Context, res: Any, owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    ns = owner["metadata"].get("namespace")
    return [
        o
        for o in ctx.store.all(res, ns)
        if (ref := controller_of(o)) is not None and ref.get("uid") == uid
    ]


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


# -- deployments --------------------------------------------------------------------------


def sync_deployments(ctx: Context) -> None:
    for dep in list(ctx.store.all(DEPLOYMENTS)):
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
    if owner_is(dep, obj):
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


def owner_is(dep: Obj, rs: Obj) -> bool:
    ref = controller_of(rs)
    return ref is not None and ref.get("uid") == dep["metadata"]["uid"]


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
        scheduled = sum(1 for p in new_pods if p["spec"].get("nodeName"))
        # Old pods go as soon as the new ones have a node, even if those then crash: that is
        # how a bad image takes the service down. Unschedulable new pods keep the old ones.
        if scheduled >= replicas:
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
            k: v for k, v in status.items() if v or k == "observedGeneration" or k == "conditions"
        }
        ctx.store.update(DEPLOYMENTS, obj)


# -- replicasets and statefulsets ---------------------------------------------------------


def _new_pod(owner: Obj, name: str, labels: dict[str, str], extra_spec: Obj | None = None) -> Obj:
    template = copy.deepcopy(owner["spec"]["template"])
    meta = template.get("metadata") or {}
    pod: Obj = {
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {**(meta.get("labels") or {}), **labels},
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": {**template.get("spec", {}), **(extra_spec or {})},
    }
    if meta.get("annotations"):
        pod["metadata"]["annotations"] = dict(meta["annotations"])
    if owner["kind"] == "ReplicaSet":
        pod["metadata"]["generateName"] = owner["metadata"]["name"] + "-"
    return defaults.apply_defaults("Pod", pod)


def _ready_count(pods: list[Obj]) -> int:
    return sum(1 for p in pods if pod_ready(p))


def _delete_rank(pod: Obj) -> tuple[int, int, str]:
    """Which pods a scale-down removes first: unscheduled, then not ready, then newest."""
    return (
        0 if not pod["spec"].get("nodeName") else 1,
        1 if pod_ready(pod) else 0,
        "".join(chr(255 - ord(ch)) for ch in pod["metadata"]["creationTimestamp"]),
    )


def sync_replicasets(ctx: Context) -> None:
    for rs in list(ctx.store.all(REPLICASETS)):
        pods = [p for p in owned(ctx, PODS, rs) if not p["metadata"].get("deletionTimestamp")]
        want = rs["spec"].get("replicas", 1)
        if len(pods) < want:
            for _ in range(want - len(pods)):
                name = f"{rs['metadata']['name']}-{random_suffix()}"
                ctx.store.create(PODS, _new_pod(rs, name, {}))
                ctx.recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulCreate",
                    f"Created pod: {name}",
                    "replicaset-controller",
                )
        elif len(pods) > want:
            for pod in sorted(pods, key=_delete_rank)[: len(pods) - want]:
                name = pod["metadata"]["name"]
                ctx.store.delete(PODS, pod["metadata"]["namespace"], name)
                ctx.recorder.record(
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {name}",
                    "replicaset-controller",
                )


def replicaset_status(ctx: Context) -> None:
    for rs in list(ctx.store.all(REPLICASETS)):
        pods = owned(ctx, PODS, rs)
        ready = _ready_count(pods)
        match = selector_matcher(rs["spec"].get("selector"))
        status: Obj = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(
                1 for p in pods if match(p["metadata"].get("labels") or {})
            ),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        if rs.get("status") != status:
            obj = copy.deepcopy(rs)
            obj["status"] = status
            ctx.store.update(REPLICASETS, obj)


def _sts_revision(sts: Obj) -> str:
    return f"{sts['metadata']['name']}-{template_hash(sts['spec']['template'])}"


def sync_statefulsets(ctx: Context) -> None:
    for sts in list(ctx.store.all(STATEFULSETS)):
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        update_rev = _sts_revision(sts)
        pods = {p["metadata"]["name"]: p for p in owned(ctx, PODS, sts)}
        want = sts["spec"].get("replicas", 1)
        ordered = sts["spec"].get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        for i in range(want):
            pod_name = f"{name}-{i}"
            if pod_name in pods:
                if ordered and not pod_ready(pods[pod_name]):
                    break
                continue
            if ctx.store.get(PODS, ns, pod_name) is not None:
                break  # the old pod of that name is still there (not ours, or going)
            labels = {
                "controller-revision-hash": update_rev,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(i),
            }
            extra = {"hostname": pod_name, "subdomain": sts["spec"].get("serviceName", name)}
            ctx.store.create(PODS, _new_pod(sts, pod_name, labels, extra))
            ctx.recorder.record(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Pod {pod_name} in StatefulSet {name} successful",
                "statefulset-controller",
            )
            if ordered:
                break
        extra_pods = sorted(
            (p for n, p in pods.items() if _ordinal(n, name) >= want),
            key=lambda p: -_ordinal(p["metadata"]["name"], name),
        )
        if extra_pods:
            _delete_sts_pod(ctx, sts, extra_pods[0])
            continue
        stale = [
            p
            for p in pods.values()
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != update_rev
        ]
        if stale and all(pod_ready(p) for p in pods.values() if p not in stale):
            _delete_sts_pod(
                ctx, sts, max(stale, key=lambda p: _ordinal(p["metadata"]["name"], name))
            )


def _ordinal(pod_name: str, sts_name: str) -> int:
    try:
        return int(pod_name[len(sts_name) + 1 :])
    except ValueError:
        return -1


def _delete_sts_pod(ctx: Context, sts: Obj, pod: Obj) -> None:
    pod_name = pod["metadata"]["name"]
    ctx.store.delete(PODS, pod["metadata"]["namespace"], pod_name)
    ctx.recorder.record(
        sts,
        "Normal",
        "SuccessfulDelete",
        f"delete Pod {pod_name} in StatefulSet {sts['metadata']['name']} successful",
        "statefulset-controller",
    )


def statefulset_status(ctx: Context) -> None:
    for sts in list(ctx.store.all(STATEFULSETS)):
        pods = owned(ctx, PODS, sts)
        rev = _sts_revision(sts)
        current = sum(
            1
            for p in pods
            if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == rev
        )
        ready = _ready_count(pods)
        status: Obj = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "currentReplicas": current,
            "updatedReplicas": current,
            "currentRevision": rev,
            "updateRevision": rev,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "availableReplicas")}
        if sts.get("status") != status:
            obj = copy.deepcopy(sts)
            obj["status"] = status
            ctx.store.update(STATEFULSETS, obj)


# -- endpoints and garbage collection -----------------------------------------------------


def _target_port(svc_port: Obj, pod: Obj) -> int | None:
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in pod["spec"].get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def _ip_key(address: Obj) -> tuple[int, ...]:
    return tuple(int(x) for x in address["ip"].split("."))


def sync_endpoints(ctx: Context) -> None:
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in ctx.store.all(SERVICES)
    }
    for ep in list(ctx.store.all(ENDPOINTS)):
        key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
        if key not in services:
            ctx.store.delete(ENDPOINTS, *key)
    for (ns, name), svc in services.items():
        selector = svc["spec"].get("selector")
        if not selector:
            if (ns, name) == ("default", "kubernetes") and not ctx.store.get(ENDPOINTS, ns, name):
                ctx.store.create(
                    ENDPOINTS,
                    {
                        "metadata": {
                            "name": name,
                            "namespace": ns,
                            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                        },
                        "subsets": [
                            {
                                "addresses": [{"ip": "10.0.0.10"}],
                                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                            }
                        ],
                    },
                )
            continue
        ready: list[Obj] = []
        not_ready: list[Obj] = []
        ports: list[Obj] = []
        for pod in ctx.store.all(PODS, ns):
            labels = pod["metadata"].get("labels") or {}
            ip = pod.get("status", {}).get("podIP")
            if not ip or any(labels.get(k) != v for k, v in selector.items()):
                continue
            address: Obj = {"ip": ip}
            if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == name:
                address["hostname"] = pod["spec"]["hostname"]
            address["nodeName"] = pod["spec"].get("nodeName")
            address["targetRef"] = {
                "kind": "Pod",
                "namespace": ns,
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            }
            (ready if pod_ready(pod) else not_ready).append(address)
            if not ports:
                for p in svc["spec"].get("ports") or []:
                    target = _target_port(p, pod)
                    if target is not None:
                        entry = {"port": target, "protocol": p.get("protocol", "TCP")}
                        if p.get("name"):
                            entry = {"name": p["name"], **entry}
                        ports.append(entry)
        subset: Obj = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_ip_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_ip_key)
        ep = {
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(svc["metadata"].get("labels") or {}),
            },
        }
        if subset and ports:
            subset["ports"] = ports
            ep["subsets"] = [subset]
        old = ctx.store.get_copy(ENDPOINTS, ns, name)
        if old is None:
            ctx.store.create(ENDPOINTS, ep)
        elif (
            old.get("subsets") != ep.get("subsets")
            or old["metadata"].get("labels") != ep["metadata"]["labels"]
        ):
            old["metadata"]["labels"] = ep["metadata"]["labels"]
            annotations = old["metadata"].setdefault("annotations", {})
            annotations["endpoints.kubernetes.io/last-change-trigger-time"] = rfc3339(ctx.clock())
            old.pop("subsets", None)
            if "subsets" in ep:
                old["subsets"] = ep["subsets"]
            ctx.store.update(ENDPOINTS, old)


def collect_garbage(ctx: Context) -> None:
    """Delete what a controller owns once the controller is gone (background propagation)."""
    for res in (REPLICASETS, PODS):
        for obj in list(ctx.store.all(res)):
            ref = controller_of(obj)
            if ref is None:
                continue
            group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
            owner_res = BY_KIND.get((group, ref["kind"]))
            if owner_res is None:
                continue
            owner = ctx.store.get(owner_res, obj["metadata"].get("namespace"), ref["name"])
            if owner is None or owner["metadata"]["uid"] != ref["uid"]:
                ctx.store.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
