"""How many pods of one size the nodes can hold: the scheduler's arithmetic, for a verdict.

From what the checks read (each schedulable node's allocatable, the requests of the pods
bound to it by app, one pod's requests), `replicas_that_fit` says how many replicas of an app
the nodes fit if the app's own pods were placed afresh: the N of a `scale:APP=N` that leaves
none Pending. Pure functions over plain dicts; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from irlib.k8s.quantity import Quantity, cpu_millicores, memory_bytes, parse_or_none

RESOURCES = ("cpu_m", "memory", "pods")


def cpu_or_zero(value: Quantity) -> float:
    """Millicores of a CPU quantity; 0 for one that cannot be read (a cluster's odd value
    must not make a check fail)."""
    try:
        return cpu_millicores(value)
    except ValueError:
        return 0.0


def amounts(resources: Mapping[str, Any] | None) -> dict[str, float]:
    """{cpu_m, memory, pods} of a `resources.requests` or a node's `allocatable`."""
    r = resources or {}
    return {
        "cpu_m": cpu_or_zero(r.get("cpu")),
        "memory": memory_bytes(r.get("memory")),
        "pods": parse_or_none(r.get("pods")) or 0.0,
    }


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """The sum of a pod's containers' requests, counting the pod itself as one pod."""
    total = {"cpu_m": 0.0, "memory": 0.0, "pods": 1.0}
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = amounts((c.get("resources") or {}).get("requests"))
        total["cpu_m"] += req["cpu_m"]
        total["memory"] += req["memory"]
    return total


def replicas_that_fit(
    allocatable: Mapping[str, Mapping[str, float]],
    requested: Mapping[str, Mapping[str, Mapping[str, float]]],
    app: str,
    per_pod: Mapping[str, float],
) -> int:
    """Replicas of `app`, each asking `per_pod` ({cpu_m, memory}), that the nodes in
    `allocatable` ({node: {cpu_m, memory, pods}}) hold beside the other apps' pods already
    bound to them (`requested`: {node: {app: {cpu_m, memory, pods}}}). A resource the pod
    does not request does not limit it; the node's pod count always does."""
    total = 0
    for node, alloc in allocatable.items():
        others = [v for a, v in (requested.get(node) or {}).items() if a != app]
        free = {k: alloc.get(k, 0.0) - sum(o.get(k, 0.0) for o in others) for k in RESOURCES}
        limits = [free["pods"]]
        for k in ("cpu_m", "memory"):
            if per_pod.get(k):
                limits.append(free[k] // per_pod[k])
        total += max(int(min(limits)), 0)
    return total


def grew(new: Mapping[str, float] | None, old: Mapping[str, float] | None) -> list[str]:
    """The resources (cpu, memory) whose request `new` raises over `old`."""
    if not new or not old:
        return []
    return [k for k in ("cpu_m", "memory") if new.get(k, 0.0) > old.get(k, 0.0)]


def describe(per_pod: Mapping[str, float]) -> str:
    """'250m CPU, 512Mi memory' of one pod's requests."""
    cpu = per_pod.get("cpu_m", 0.0)
    mem = per_pod.get("memory", 0.0) / 2**20
    cpu_s = f"{cpu / 1000:g} CPU" if cpu >= 1000 and cpu % 1000 == 0 else f"{cpu:g}m CPU"
    mem_s = f"{mem / 1024:g}Gi memory" if mem >= 1024 and mem % 1024 == 0 else f"{mem:g}Mi memory"
    return f"{cpu_s}, {mem_s}"
