"""The ReplicaSet and StatefulSet controllers, and garbage collection.

A ReplicaSet keeps its count of pods (`<rs>-<random>`, SuccessfulCreate/Delete events); a
StatefulSet keeps `<name>-<ordinal>` pods in order and replaces those of an old template.
Objects whose controller is gone are deleted (background propagation).
"""

from __future__ import annotations

import copy
from typing import Any

from irlib.lab.kube import defaults
from irlib.lab.kube.context import (
    ENDPOINTSLICES,
    NODES,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    Context,
)
from irlib.lab.kube.meta import (
    Obj,
    controller_of,
    owner_ref,
    pod_ready,
    random_suffix,
    template_hash,
)
from irlib.lab.kube.resources import BY_KIND
from irlib.lab.kube.selectors import selector_matcher


def owned(ctx: Context, res: Any, owner: Obj) -> list[Obj]:
    """The objects of `res` whose controller is `owner`, from an index of controller uids
    rebuilt only when the store changed (a scan per owner made each pass of a 2,000-pod lab
    read every pod 34 times)."""
    cached = ctx.owner_index.get(res.key)
    if cached is None or cached[0] != ctx.store.rv:
        index: dict[str, list[Obj]] = {}
        for o in ctx.store.all(res):
            ref = controller_of(o)
            if ref is not None and ref.get("uid"):
                index.setdefault(str(ref["uid"]), []).append(o)
        cached = ctx.owner_index[res.key] = (ctx.store.rv, index)
    ns = owner["metadata"].get("namespace")
    return [
        o
        for o in cached[1].get(owner["metadata"]["uid"], [])
        if ns is None or o["metadata"].get("namespace") == ns
    ]


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
        with ctx.health.guard("replicasets", rs):
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
        with ctx.health.guard("replicaset-status", rs):
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
            status = {
                k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")
            }
            if rs.get("status") != status:
                obj = copy.deepcopy(rs)
                obj["status"] = status
                ctx.store.update(REPLICASETS, obj)


def _sts_revision(sts: Obj) -> str:
    return f"{sts['metadata']['name']}-{template_hash(sts['spec']['template'])}"


def sync_statefulsets(ctx: Context) -> None:
    for sts in list(ctx.store.all(STATEFULSETS)):
        with ctx.health.guard("statefulsets", sts):
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
        with ctx.health.guard("statefulset-status", sts):
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
            status = {
                k: v for k, v in status.items() if v or k in ("replicas", "availableReplicas")
            }
            if sts.get("status") != status:
                obj = copy.deepcopy(sts)
                obj["status"] = status
                ctx.store.update(STATEFULSETS, obj)


def collect_garbage(ctx: Context) -> None:
    """Delete what a controller owns once the controller is gone (background propagation),
    and pods bound to a node that no longer exists (the pod GC's orphans; its 40 s
    quarantine left out), so that their ReplicaSet replaces them on a node that does."""
    nodes = {n["metadata"]["name"] for n in ctx.store.all(NODES)}
    for pod in list(ctx.store.all(PODS)):
        with ctx.health.guard("pod-gc", pod):
            node = pod["spec"].get("nodeName")
            if node and node not in nodes:
                ctx.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    for res in (REPLICASETS, PODS, ENDPOINTSLICES):
        for obj in list(ctx.store.all(res)):
            with ctx.health.guard("garbage-collector", obj):
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
