"""The scheduler: binds each unscheduled pod to a Ready node with room for its requests
(CPU, memory, pod count against allocatable; nodeSelector), spreading an app's pods. A pod
that fits nowhere stays Pending, PodScheduled=False (Unschedulable), with a FailedScheduling
event worded as kube-scheduler words it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from irlib.k8s import quantity
from irlib.lab.kube.context import NODES, PODS, Context
from irlib.lab.kube.meta import Obj, rfc3339, set_condition


def _requests(pod: Obj) -> tuple[int, int]:
    cpu = mem = 0
    for c in pod["spec"].get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += quantity.millicores(req.get("cpu"))
        mem += int(quantity.parse(req.get("memory")))
    return cpu, mem


def _active(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


@dataclass
class _Node:
    """What the scheduler needs of a node, read once per pass."""

    name: str
    cpu: int  # allocatable millicores
    memory: float
    pods: int
    labels: dict[str, str]
    unschedulable: bool


def _node(n: Obj) -> _Node:
    """A node as the scheduler sees it: an absent allocatable is zero, as kube-scheduler
    reads it (nodes.register fills it in first, as the node's kubelet would); a quantity that
    is not one raises, and the scheduler leaves that node out."""
    alloc = (n.get("status") or {}).get("allocatable") or {}
    return _Node(
        name=n["metadata"]["name"],
        cpu=quantity.millicores(alloc.get("cpu")),
        memory=quantity.parse(alloc.get("memory")),
        pods=int(quantity.parse(alloc.get("pods"))),
        labels=dict(n["metadata"].get("labels") or {}),
        unschedulable=bool((n.get("spec") or {}).get("unschedulable")),
    )


def schedule(ctx: Context) -> None:
    pending = [p for p in ctx.store.all(PODS) if not p["spec"].get("nodeName") and _active(p)]
    if not pending:
        return
    pending.sort(key=lambda p: p["metadata"]["creationTimestamp"])
    nodes: list[_Node] = []
    for n in sorted(ctx.store.all(NODES), key=lambda n: n["metadata"]["name"]):
        with ctx.health.guard("scheduler", n):  # one unreadable node must not stop the rest
            nodes.append(_node(n))
    used: dict[str, list[int]] = {n.name: [0, 0, 0] for n in nodes}
    same_app: Counter[tuple[str, str]] = Counter()
    for p in ctx.store.all(PODS):
        node = p["spec"].get("nodeName")
        if node in used and _active(p):
            with ctx.health.guard("scheduler", p):
                cpu, mem = _requests(p)
                used[node][0] += cpu
                used[node][1] += mem
                used[node][2] += 1
                same_app[(node, (p["metadata"].get("labels") or {}).get("app", ""))] += 1
    down = ctx.not_ready_nodes()
    for pod in pending:
        with ctx.health.guard("scheduler", pod):
            _place(ctx, pod, nodes, used, same_app, down)


def _place(
    ctx: Context,
    pod: Obj,
    nodes: list[_Node],
    used: dict[str, list[int]],
    same_app: Counter[tuple[str, str]],
    down: set[str],
) -> None:
    cpu, mem = _requests(pod)
    app = (pod["metadata"].get("labels") or {}).get("app", "")
    selector = pod["spec"].get("nodeSelector") or {}
    reasons: Counter[str] = Counter()
    preemption: Counter[str] = Counter()
    fits = []
    for n in nodes:
        if n.name in down or n.unschedulable:
            why = (
                "node(s) were unschedulable"
                if n.unschedulable
                else "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
            )
            reasons[why] += 1
            preemption["Preemption is not helpful for scheduling"] += 1
            continue
        if any(n.labels.get(k) != v for k, v in selector.items()):
            reasons["node(s) didn't match Pod's node affinity/selector"] += 1
            preemption["Preemption is not helpful for scheduling"] += 1
            continue
        short = []
        if used[n.name][0] + cpu > n.cpu:
            short.append("Insufficient cpu")
        if used[n.name][1] + mem > n.memory:
            short.append("Insufficient memory")
        if used[n.name][2] + 1 > n.pods:
            short.append("Too many pods")
        if short:
            reasons.update(short)
            preemption["No preemption victims found for incoming pod"] += 1
            continue
        load = used[n.name][0] / max(n.cpu, 1)
        fits.append((same_app[(n.name, app)], load, n.name))
    if fits:
        _, _, chosen = min(fits)
        used[chosen][0] += cpu
        used[chosen][1] += mem
        used[chosen][2] += 1
        same_app[(chosen, app)] += 1
        _bind(ctx, pod, chosen)
    else:
        _unschedulable(ctx, pod, len(nodes), reasons, preemption)


def _bind(ctx: Context, pod: Obj, node: str) -> None:
    obj = ctx.store.get_copy(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    if obj is None:
        return
    obj["spec"]["nodeName"] = node
    conds = obj["status"].setdefault("conditions", [])
    set_condition(conds, "PodScheduled", "True", rfc3339(ctx.clock()), probe_time=True)
    obj = ctx.store.update(PODS, obj)
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    ctx.recorder.record(
        obj,
        "Normal",
        "Scheduled",
        f"Successfully assigned {ns}/{name} to {node}",
        "default-scheduler",
    )


def _summary(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items(), key=lambda kv: kv[0]))


def _unschedulable(
    ctx: Context, pod: Obj, total: int, reasons: Counter[str], preemption: Counter[str]
) -> None:
    message = (
        f"0/{total} nodes are available: {_summary(reasons)}. "
        f"preemption: 0/{total} nodes are available: {_summary(preemption)}."
    )
    obj = ctx.store.get_copy(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    if obj is None:
        return
    conds = obj["status"].setdefault("conditions", [])
    set_condition(
        conds,
        "PodScheduled",
        "False",
        rfc3339(ctx.clock()),
        "Unschedulable",
        message,
        probe_time=True,
    )
    obj = ctx.store.update(PODS, obj)
    ctx.recorder.record(
        obj, "Warning", "FailedScheduling", message, "default-scheduler", min_interval=20.0
    )
