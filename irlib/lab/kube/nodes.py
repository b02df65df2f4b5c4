"""Node lifecycle: each node's conditions, taints and lease, from the lab's fault switches.

A node named in `not_ready_nodes` goes the way of a node whose kubelet stopped posting:
Ready=Unknown (NodeStatusUnknown), the unreachable taints, NodeNotReady events on it and its
pods, no lease renewals. When the switch goes, the node is Ready again.

A node applied with only the fields Kubernetes requires (a name) is completed first, as its
kubelet and the node IPAM controller would complete it (`register`), so every loop after this
one can read it.
"""

from __future__ import annotations

from typing import Any

from irlib.k8s import quantity
from irlib.lab.kube import cluster
from irlib.lab.kube.context import NODES, PODS, Context
from irlib.lab.kube.meta import Obj, condition, parse_time, rfc3339, rfc3339_micro, set_condition
from irlib.lab.kube.resources import resource

UNREACHABLE = "node.kubernetes.io/unreachable"
NODE_CONDITIONS = (
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)
HEARTBEAT = 60.0  # a healthy kubelet re-posts unchanged conditions this often
LEASE_RENEW = 10.0
LEASES = resource("leases.coordination.k8s.io")


def node_lifecycle(ctx: Context) -> None:
    down = ctx.not_ready_nodes()
    now = ctx.clock()
    stamp = rfc3339(now)
    for node in list(ctx.store.all(NODES)):
        with ctx.health.guard("node-lifecycle", node):
            name = node["metadata"]["name"]
            obj = ctx.store.get_copy(NODES, None, name)
            assert obj is not None
            register(ctx, obj)
            status, spec = obj["status"], obj["spec"]
            conds: list[Obj] = status.setdefault("conditions", [])
            was_ready = _node_ready(node)
            if name in down:
                for type_, _, _, _ in NODE_CONDITIONS:
                    old = next((c for c in conds if c["type"] == type_), {})
                    set_condition(
                        conds,
                        type_,
                        "Unknown",
                        stamp,
                        "NodeStatusUnknown",
                        "Kubelet stopped posting node status.",
                    )
                    _keep(conds, type_, "lastHeartbeatTime", old.get("lastHeartbeatTime", stamp))
                taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE]
                old_taints = {
                    t["effect"]: t for t in spec.get("taints") or [] if t["key"] == UNREACHABLE
                }
                for effect in ("NoSchedule", "NoExecute"):
                    taints.append(
                        old_taints.get(effect)
                        or {"key": UNREACHABLE, "effect": effect, "timeAdded": stamp}
                    )
                spec["taints"] = taints
            else:
                for type_, st, reason, message in NODE_CONDITIONS:
                    old = next((c for c in conds if c["type"] == type_), {})
                    set_condition(conds, type_, st, stamp, reason, message)
                    beat = old.get("lastHeartbeatTime")
                    fresh = (
                        beat
                        and (now - (parse_time(beat) or 0.0)) < HEARTBEAT
                        and old.get("status") == st
                    )
                    _keep(conds, type_, "lastHeartbeatTime", beat if fresh else stamp)
                taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE]
                if taints:
                    spec["taints"] = taints
                else:
                    spec.pop("taints", None)
            ctx.store.update(NODES, obj)
            ready = name not in down
            if ready:
                _renew_lease(ctx, name, now)
            if ready != was_ready and _has_conditions(node):
                if ready:
                    ctx.recorder.record(
                        obj,
                        "Normal",
                        "NodeReady",
                        f"Node {name} status is now: NodeReady",
                        "kubelet",
                        host=name,
                    )
                else:
                    ctx.recorder.record(
                        obj,
                        "Normal",
                        "NodeNotReady",
                        f"Node {name} status is now: NodeNotReady",
                        "node-controller",
                    )
                    for pod in ctx.store.all(PODS):
                        if pod["spec"].get("nodeName") == name:
                            ctx.recorder.record(
                                pod,
                                "Warning",
                                "NodeNotReady",
                                "Node is not ready",
                                "node-controller",
                            )


def register(ctx: Context, node: Obj) -> None:
    """Fill in what a node's kubelet posts when it registers and what the node IPAM controller
    assigns, where the applied object lacks it; what the object says is kept.

    A capacity missing cpu, memory or pods takes the lab's machine shape for it
    (cluster.NODE_CPU, NODE_MEMORY, NODE_PODS), as a kubelet reports the machine it runs on;
    an allocatable missing one takes the capacity's: the kubelet computes allocatable =
    capacity - kube-reserved - system-reserved - eviction threshold, and the lab's kubelets
    reserve nothing. (Kubernetes' scheduler reads an absent allocatable as zero, so a node
    object without one would never get a pod; on a cluster the kubelet fills it in within
    seconds of registering, and in the lab this function is that kubelet.)
    """
    name = node["metadata"]["name"]
    meta_labels = node["metadata"].setdefault("labels", {})
    for key, value in (
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ):
        meta_labels.setdefault(key, value)
    spec = node.get("spec")
    if not isinstance(spec, dict):
        spec = node["spec"] = {}
    status = node.get("status")
    if not isinstance(status, dict):
        status = node["status"] = {}
    others = [n for n in ctx.store.all(NODES) if n["metadata"]["name"] != name]
    if not spec.get("podCIDR"):
        taken = {(n.get("spec") or {}).get("podCIDR") for n in others}
        cidr = next(f"10.244.{i}.0/24" for i in range(1, 256) if f"10.244.{i}.0/24" not in taken)
        spec["podCIDR"] = cidr
        spec["podCIDRs"] = [cidr]
    machine = {"cpu": cluster.NODE_CPU, "memory": cluster.NODE_MEMORY, "pods": cluster.NODE_PODS}
    capacity = {**machine, **(status.get("capacity") or {})}
    status["capacity"] = capacity
    status["allocatable"] = {**capacity, **(status.get("allocatable") or {})}
    for part in ("capacity", "allocatable"):  # a kubelet cannot run on what it cannot read
        for key in ("cpu", "memory", "pods"):
            try:
                quantity.parse(status[part][key])
            except (ValueError, TypeError) as exc:
                raise ValueError(f"status.{part}.{key}: {exc}") from exc
    if not status.get("addresses"):
        taken = {internal_ip(n) for n in others}
        free = (f"10.0.{i // 240}.{11 + i % 240}" for i in range(240 * 250))
        ip = next(a for a in free if a not in taken)
        status["addresses"] = [
            {"type": "InternalIP", "address": ip},
            {"type": "Hostname", "address": name},
        ]
    status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 10250}})
    info = status.setdefault("nodeInfo", {})
    machine_info = cluster.node(0, name)["status"]["nodeInfo"]  # the lab's nodes' software
    for key in (
        "architecture",
        "operatingSystem",
        "osImage",
        "kernelVersion",
        "containerRuntimeVersion",
        "kubeletVersion",
        "kubeProxyVersion",
    ):
        info.setdefault(key, machine_info[key])


def internal_ip(node: Obj) -> str:
    """The node's InternalIP ("" when it has none)."""
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address", ""))
    return ""


def _renew_lease(ctx: Context, node: str, now: float) -> None:
    lease = ctx.store.get_copy(LEASES, "kube-node-lease", node)
    if lease is None:
        return
    last = parse_time(lease["spec"].get("renewTime"))
    if last is None or now - last >= LEASE_RENEW:
        lease["spec"]["renewTime"] = rfc3339_micro(now)
        ctx.store.update(LEASES, lease)


def _has_conditions(node: Obj) -> bool:
    return bool((node.get("status") or {}).get("conditions"))


def _keep(conds: list[Obj], type_: str, key: str, value: Any) -> None:
    """Node conditions carry lastHeartbeatTime before lastTransitionTime, as kubelets write."""
    for i, c in enumerate(conds):
        if c["type"] == type_:
            conds[i] = {
                "type": c["type"],
                "status": c["status"],
                key: value,
                **{k: v for k, v in c.items() if k not in ("type", "status", key)},
            }


def _node_ready(node: Obj) -> bool:
    c = condition(node, "Ready")
    return c is not None and c.get("status") == "True"
