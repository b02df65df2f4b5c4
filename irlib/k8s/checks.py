"""Read-only Kubernetes checks, one per kubectl command of the runbook: pods, ingress,
recent events, rollout history, nodes, resource use (top), logs, previous logs, pod details.

Each returns a Check whose evidence is the table kubectl would print and whose `facts` feed
the verdict's rules (which pods crash-loop, which were OOM-killed, which are Pending ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from irlib.errors import Refused
from irlib.k8s import capacity, coverage
from irlib.k8s import permissions as P
from irlib.k8s._client import Kube, age, parse_time
from irlib.k8s.permissions import reads
from irlib.k8s.quantity import cpu_millicores, memory_bytes
from irlib.results import Check, Evidence, Status, guarded

TARGET = "kubernetes"
ROWS_SHOWN = 100  # rows of a pod table in the evidence; the facts keep every pod
PREVIOUS_MAX = 10  # restarted containers whose previous log one check reads
DETAILS_MAX = 10  # not-ready pods whose events one check reads


def _shown(title: str, rows: list[dict[str, Any]], order: str) -> Evidence:
    """A table of at most ROWS_SHOWN rows, its title saying so when it is cut."""
    if len(rows) <= ROWS_SHOWN:
        return Evidence.table(title, rows)
    return Evidence.table(
        f"{title} (first {ROWS_SHOWN} of {len(rows):,}, {order})", rows[:ROWS_SHOWN]
    )


def _guarded(name: str, body: Callable[[], Check]) -> Check:
    # an API server that cannot be asked, or refuses us (403), is ERROR: we could not look
    return guarded(name, TARGET, body)


# -- pods ------------------------------------------------------------------------------------


def pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pods`."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase", "Unknown")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    return str(reason)


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def pod_row(pod: dict[str, Any], app_label: str) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    total = len(pod["spec"]["containers"])
    last = [cs.get("lastState", {}).get("terminated", {}).get("reason") for cs in statuses]
    return {
        "pod": pod["metadata"]["name"],
        "app": (pod["metadata"].get("labels") or {}).get(app_label, ""),
        "ready": f"{ready}/{total}",
        "status": pod_status(pod),
        "restarts": sum(cs.get("restartCount", 0) for cs in statuses),
        "last_state": next((r for r in last if r), ""),
        "node": pod["spec"].get("nodeName") or "",
        "age": age(pod["metadata"].get("creationTimestamp")),
    }


@reads(P.LIST_PODS)
def check_pods(
    kube: Kube,
    *,
    app_label: str = "app",
    restarts_warn: int = 3,
    selector: str | None = None,
    name: str = "pods",
) -> Check:
    """`kubectl get pods -n trading [-l selector]`: every pod ready, none crash-looping or
    Pending."""

    def body() -> Check:
        pods = kube.pods(selector)
        rows = [pod_row(p, app_label) for p in pods]
        ready = {p["metadata"]["name"]: _ready(p) for p in pods}
        by_name = {p["metadata"]["name"]: p for p in pods}
        facts = {
            # between two crashes a container shows Running but not ready: restarts and the
            # last termination tell a crash loop apart from a slow start
            # with each pod's revision: a rollback answers only the current revision's crashes
            "crashlooping": [
                {**r, "template_hash": _template_hash(by_name[r["pod"]])}
                for r in rows
                if r["status"] in ("CrashLoopBackOff", "Error")
                or (not ready[r["pod"]] and r["restarts"] and r["last_state"])
            ],
            "oom_killed": [r for r in rows if "OOMKilled" in (r["status"], r["last_state"])],
            # a Pending pod's requests and revision: what a verdict weighs against the nodes
            "pending": [
                _pending_row(r, by_name[r["pod"]]) for r in rows if r["status"] == "Pending"
            ],
            "not_ready": [r for r in rows if not ready[r["pod"]]],
            "restarting": [r for r in rows if r["restarts"] >= restarts_warn],
            "by_app": _by_app(rows, ready),
            "requested": _requested(pods, app_label),
        }
        bad = facts["not_ready"] or facts["pending"] or facts["crashlooping"]
        status = Status.FAIL if bad else Status.WARN if facts["restarting"] else Status.OK
        summary = f"{sum(ready.values())}/{len(rows)} pods ready" + _counted(
            facts, ("crashlooping", "oom_killed", "pending")
        )
        rows.sort(key=lambda r: (ready[r["pod"]], r["app"], r["pod"]))
        command = f"kubectl get pods -n {kube.namespace}" + (f" -l {selector}" if selector else "")
        table = _shown(command, rows, "not ready first")
        return Check(name, TARGET, status, summary, (table,), facts=facts)

    return _guarded(name, body)


def _template_hash(pod: dict[str, Any]) -> str:
    """The pod's ReplicaSet revision (its pod-template-hash label); "" for other pods."""
    return str((pod["metadata"].get("labels") or {}).get("pod-template-hash", ""))


def _pending_row(row: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "requests": capacity.pod_requests(pod),
        "template_hash": _template_hash(pod),
    }


def _requested(
    pods: list[dict[str, Any]], app_label: str
) -> dict[str, dict[str, dict[str, float]]]:
    """{node: {app: {cpu_m, memory, pods}}}: what the pods bound to each node request, as the
    scheduler counts it (finished pods hold nothing)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p in pods:
        node = p["spec"].get("nodeName")
        if not node or p.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        app = (p["metadata"].get("labels") or {}).get(app_label, "")
        slot = out.setdefault(node, {}).setdefault(app, {"cpu_m": 0.0, "memory": 0.0, "pods": 0})
        for k, v in capacity.pod_requests(p).items():
            slot[k] += v
    return out


def _by_app(rows: list[dict[str, Any]], ready: dict[str, bool]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        app = out.setdefault(r["app"], {"pods": 0, "ready": 0})
        app["pods"] += 1
        app["ready"] += int(ready[r["pod"]])
    return out


def _counted(facts: dict[str, Any], keys: tuple[str, ...]) -> str:
    parts = [f"{len(facts[k])} {k.replace('_', '-')}" for k in keys if facts[k]]
    return f" ({', '.join(parts)})" if parts else ""


# -- ingress, events, nodes --------------------------------------------------------------------


@reads(P.LIST_INGRESSES)
def check_ingress(kube: Kube, *, name: str) -> Check:
    """`kubectl get ingress -n trading`: the API's ingress exists and has an address."""

    def body() -> Check:
        rows = []
        for ing in kube.ingresses():
            lb = (ing.get("status", {}).get("loadBalancer") or {}).get("ingress") or []
            rules = ing["spec"].get("rules") or []
            rows.append(
                {
                    "ingress": ing["metadata"]["name"],
                    "class": ing["spec"].get("ingressClassName", ""),
                    "hosts": ",".join(r.get("host", "*") for r in rules),
                    "address": ",".join(x.get("ip") or x.get("hostname", "") for x in lb),
                    "backends": ",".join(
                        sorted(
                            {
                                p["backend"]["service"]["name"]
                                for r in rules
                                for p in (r.get("http") or {}).get("paths", [])
                                if "service" in p.get("backend", {})
                            }
                        )
                    ),
                }
            )
        mine = [r for r in rows if r["ingress"] == name]
        if not mine:
            status, summary = Status.FAIL, f"ingress {name} not found"
        elif not mine[0]["address"]:
            status, summary = Status.WARN, f"ingress {name} has no address"
        else:
            status, summary = Status.OK, f"{name} -> {mine[0]['backends']} at {mine[0]['address']}"
        return Check(
            "ingress",
            TARGET,
            status,
            summary,
            (Evidence.table(f"kubectl get ingress -n {kube.namespace}", rows),),
            facts={"found": bool(mine)},
        )

    return _guarded("ingress", body)


@reads(P.LIST_EVENTS)
def check_recent_events(kube: Kube, *, limit: int = 20) -> Check:
    """`kubectl get events --sort-by=.lastTimestamp | tail -20`; Warnings make it WARN."""

    def body() -> Check:
        events = sorted(kube.events(), key=_event_time)[-limit:]
        rows = [
            {
                "last_seen": age(_event_stamp(e)),
                "type": e.get("type", ""),
                "reason": e.get("reason", ""),
                "object": f"{e['involvedObject'].get('kind', '').lower()}/"
                f"{e['involvedObject'].get('name', '')}",
                "count": e.get("count") or 1,
                "message": (e.get("message") or "")[:200],
            }
            for e in events
        ]
        warnings = [r for r in rows if r["type"] == "Warning"]
        reasons = sorted({r["reason"] for r in warnings})
        status = Status.WARN if warnings else Status.OK
        summary = (
            f"{len(warnings)} warning(s) in the last {len(rows)} events: {', '.join(reasons)}"
            if warnings
            else f"{len(rows)} events, no warnings"
        )
        return Check(
            "recent events",
            TARGET,
            status,
            summary,
            (Evidence.table("kubectl get events --sort-by=.lastTimestamp", rows),),
            facts={"warning_reasons": reasons, "warnings": warnings},
        )

    return _guarded("recent events", body)


def _event_stamp(e: dict[str, Any]) -> str | None:
    return e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp")


def _event_time(e: dict[str, Any]) -> float:
    when = parse_time(_event_stamp(e))
    return when.timestamp() if when else 0.0


@reads(P.LIST_NODES)
def check_nodes(kube: Kube) -> Check:
    """`kubectl get nodes`: every node Ready."""

    def body() -> Check:
        rows, allocatable, cordoned = [], {}, []
        for n in kube.nodes():
            cond = {c["type"]: c for c in (n.get("status") or {}).get("conditions") or []}
            ready = cond.get("Ready", {})
            name = n["metadata"]["name"]
            if _schedulable(n):
                if ready.get("status") == "True":
                    allocatable[name] = capacity.amounts((n.get("status") or {}).get("allocatable"))
            else:
                cordoned.append(name)
            rows.append(
                {
                    "node": n["metadata"]["name"],
                    "status": "Ready" if ready.get("status") == "True" else "NotReady",
                    "reason": ready.get("reason", ""),
                    "version": ((n.get("status") or {}).get("nodeInfo") or {}).get(
                        "kubeletVersion", ""
                    ),
                    "cpu": ((n.get("status") or {}).get("allocatable") or {}).get("cpu", ""),
                    "memory": ((n.get("status") or {}).get("allocatable") or {}).get("memory", ""),
                    "age": age(n["metadata"].get("creationTimestamp")),
                }
            )
        not_ready = [r["node"] for r in rows if r["status"] != "Ready"]
        status = Status.FAIL if not_ready else Status.OK
        summary = f"NotReady: {', '.join(not_ready)}" if not_ready else f"{len(rows)} nodes Ready"
        return Check(
            "nodes",
            TARGET,
            status,
            summary,
            (Evidence.table("kubectl get nodes", rows),),
            # allocatable: the Ready nodes that take new pods, {node: {cpu_m, memory, pods}}
            facts={"not_ready": not_ready, "allocatable": allocatable, "cordoned": cordoned},
        )

    return _guarded("nodes", body)


def _schedulable(node: dict[str, Any]) -> bool:
    """Not cordoned and no taint that keeps new pods off (NoSchedule, NoExecute)."""
    spec = node.get("spec") or {}
    return not spec.get("unschedulable") and not any(
        t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []
    )


# -- rollouts --------------------------------------------------------------------------------


@reads(P.GET_DEPLOYMENT, P.LIST_REPLICASETS)
def check_rollout_history(kube: Kube, *, deployment: str) -> Check:
    """`kubectl rollout history deployment/<name>`, with each revision's image and pods."""

    def body() -> Check:
        dep = kube.deployment(deployment)
        selector = ",".join(
            f"{k}={v}" for k, v in dep["spec"]["selector"].get("matchLabels", {}).items()
        )
        uid = dep["metadata"]["uid"]
        owned = [
            rs
            for rs in kube.replicasets(selector)
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))
        ]
        rows, revisions = [], {}
        for rs in owned:
            ann = rs["metadata"].get("annotations") or {}
            revisions[int(ann.get("deployment.kubernetes.io/revision", 0))] = {
                "template_hash": (rs["metadata"].get("labels") or {}).get("pod-template-hash", ""),
                "requests": capacity.pod_requests(rs["spec"]["template"]),
                "desired": rs["spec"].get("replicas", 0),
            }
            rows.append(
                {
                    "revision": int(ann.get("deployment.kubernetes.io/revision", 0)),
                    "replicaset": rs["metadata"]["name"],
                    "image": ",".join(
                        c["image"] for c in rs["spec"]["template"]["spec"]["containers"]
                    ),
                    "change_cause": ann.get("kubernetes.io/change-cause", ""),
                    "desired": rs["spec"].get("replicas", 0),
                    "ready": rs.get("status", {}).get("readyReplicas") or 0,
                    "created": rs["metadata"].get("creationTimestamp"),
                    "age": age(rs["metadata"].get("creationTimestamp")),
                }
            )
        rows.sort(key=lambda r: -r["revision"])
        current = rows[0] if rows else None
        previous = rows[1] if len(rows) > 1 else None
        st = dep.get("status", {})
        want = dep["spec"].get("replicas", 0)
        available = st.get("availableReplicas") or 0
        facts = {
            "current_revision": current and current["revision"],
            "current_image": current and current["image"],
            "current_age": current and current["age"],
            "current_created": current and current["created"],
            "previous_image": previous and previous["image"],
            "previous_revision": previous and previous["revision"],
            # what one pod of each revision asks for, and whether an older revision still
            # runs pods (a rollout under way): a Pending pod of a grown new revision is the
            # rollout's doing, not the nodes'
            "current_hash": current and revisions[current["revision"]]["template_hash"],
            "current_requests": current and revisions[current["revision"]]["requests"],
            "previous_requests": previous and revisions[previous["revision"]]["requests"],
            "rollout_in_progress": any(
                r["desired"]
                for rev, r in revisions.items()
                if current and rev != current["revision"]
            ),
            "replicas": want,
            "available": available,
            "updated": st.get("updatedReplicas") or 0,
        }
        status = Status.OK if available >= want else Status.FAIL if available == 0 else Status.WARN
        summary = (
            f"revision {facts['current_revision']} ({facts['current_image']}, "
            f"{facts['current_age']} old): {available}/{want} available"
        )
        return Check(
            "rollout history",
            TARGET,
            status,
            summary,
            (Evidence.table(f"kubectl rollout history deployment/{deployment}", rows),),
            facts=facts,
        )

    return _guarded("rollout history", body)


# -- resource use ------------------------------------------------------------------------------


@reads(P.LIST_PODS, P.LIST_POD_METRICS)
def check_top_pods(kube: Kube, *, warn_ratio: float = 0.9, app_label: str = "app") -> Check:
    """`kubectl top pods`: CPU and memory per pod, against the containers' limits."""

    def body() -> Check:
        limits = {}
        for p in kube.pods():
            lim = [c.get("resources", {}).get("limits", {}) for c in p["spec"]["containers"]]
            limits[p["metadata"]["name"]] = (
                sum(cpu_millicores(x.get("cpu")) for x in lim),
                sum(memory_bytes(x.get("memory")) for x in lim),
            )
        rows = []
        for m in kube.pod_metrics():
            name = m["metadata"]["name"]
            cpu = sum(cpu_millicores(c["usage"].get("cpu")) for c in m["containers"])
            mem = sum(memory_bytes(c["usage"].get("memory")) for c in m["containers"])
            cpu_lim, mem_lim = limits.get(name, (0.0, 0.0))
            rows.append(
                {
                    "pod": name,
                    "app": (m["metadata"].get("labels") or {}).get(app_label),
                    "cpu_m": round(cpu),
                    "memory_mi": round(mem / 2**20),
                    "cpu_of_limit": round(cpu / cpu_lim, 2) if cpu_lim else None,
                    "memory_of_limit": round(mem / mem_lim, 2) if mem_lim else None,
                }
            )
        rows.sort(key=lambda r: -(r["memory_of_limit"] or 0))
        hot = [
            r["pod"]
            for r in rows
            if (r["cpu_of_limit"] or 0) >= warn_ratio or (r["memory_of_limit"] or 0) >= warn_ratio
        ]
        status = Status.WARN if hot else Status.OK
        summary = (
            f"near their limits: {', '.join(hot)}"
            if hot
            else f"{len(rows)} pods within their limits"
        )
        return Check(
            "top pods",
            TARGET,
            status,
            summary,
            (_shown(f"kubectl top pods -n {kube.namespace}", rows, "fullest first"),),
            facts={"hot": hot, "rows": rows},
        )

    return _guarded("top pods", body)


@reads(P.LIST_NODES, P.LIST_NODE_METRICS)
def check_top_nodes(kube: Kube, *, warn_ratio: float = 0.9) -> Check:
    """`kubectl top nodes`: CPU and memory per node, against what it can allocate."""

    def body() -> Check:
        alloc = {
            n["metadata"]["name"]: n.get("status", {}).get("allocatable", {}) for n in kube.nodes()
        }
        rows = []
        for m in kube.node_metrics():
            name = m["metadata"]["name"]
            cpu, mem = cpu_millicores(m["usage"].get("cpu")), memory_bytes(m["usage"].get("memory"))
            a = alloc.get(name, {})
            cpu_a, mem_a = capacity.cpu_or_zero(a.get("cpu")), memory_bytes(a.get("memory"))
            rows.append(
                {
                    "node": name,
                    "cpu_m": round(cpu),
                    "cpu_pct": round(100 * cpu / cpu_a) if cpu_a else None,
                    "memory_mi": round(mem / 2**20),
                    "memory_pct": round(100 * mem / mem_a) if mem_a else None,
                }
            )
        hot = [
            r["node"]
            for r in rows
            if max(r["cpu_pct"] or 0, r["memory_pct"] or 0) >= warn_ratio * 100
        ]
        status = Status.WARN if hot else Status.OK
        summary = f"saturated: {', '.join(hot)}" if hot else f"{len(rows)} nodes with headroom"
        return Check(
            "top nodes",
            TARGET,
            status,
            summary,
            (Evidence.table("kubectl top nodes", rows),),
            facts={"hot": hot},
        )

    return _guarded("top nodes", body)


# -- logs and details --------------------------------------------------------------------------

ERROR_LINE = re.compile(r"\b(ERROR|FATAL|CRITICAL|Traceback|Exception|Error:)", re.I)


def _read_log(kube: Kube, name: str, fallback: str, **options: Any) -> str:
    """One pod's log; a pod with none (waiting, never started) says so. A 401/403 is raised:
    the check could not look, which is never "no log"."""
    try:
        return kube.log(name, **options)
    except Refused as e:
        if e.auth_refused:
            raise
        return f"({fallback}: {e})"


@reads(P.LIST_PODS, P.GET_POD_LOG)
def check_logs(
    kube: Kube, *, app: str, app_label: str = "app", tail: int = 100, since_s: int = 600
) -> Check:
    """`kubectl logs -l app=<app> --tail=100 --since=10m` across a bounded, relevant set of the
    app's pods: crash-looping, restarting and not-ready ones first, then a sample of the rest
    (coverage.py), five requests at a time, the bytes capped; it says what it covered."""

    def body() -> Check:
        chosen = coverage.select(kube.pods(f"{app_label}={app}"))
        limit = coverage.byte_share(len(chosen.chosen))
        texts = coverage.each_bounded(
            chosen.chosen,
            lambda pick: _read_log(
                kube,
                pick[0]["metadata"]["name"],
                "no log",
                tail_lines=tail,
                since_seconds=since_s,
                limit_bytes=limit,
            ),
        )
        rows, lines = [], []
        for (p, why), text in zip(chosen.chosen, texts, strict=True):
            name = p["metadata"]["name"]
            pod_lines = text.splitlines()
            errors = [ln for ln in pod_lines if ERROR_LINE.search(ln)]
            rows.append(
                {
                    "pod": name,
                    "why": why,
                    "lines": len(pod_lines),
                    "errors": len(errors),
                    "last_error": errors[-1][:200] if errors else "",
                }
            )
            lines += [f"[{name}] {ln}" for ln in pod_lines]
        errors = sum(r["errors"] for r in rows)
        status = Status.WARN if errors else Status.OK
        summary = f"{chosen.covered()}; {sum(r['lines'] for r in rows)} lines, {errors} errors"
        return Check(
            f"logs {app}",
            TARGET,
            status,
            summary,
            (
                Evidence.table(f"kubectl logs -l {app_label}={app} --tail={tail}", rows),
                Evidence(title="log lines", text="\n".join(lines[-200:])),
            ),
            facts={"errors": errors, "pods_read": len(rows), "pods_total": chosen.total},
        )

    return _guarded(f"logs {app}", body)


@reads(P.LIST_PODS, P.GET_POD_LOG)
def check_previous_logs(kube: Kube, *, tail: int = 50, most: int = PREVIOUS_MAX) -> Check:
    """`kubectl logs <pod> --previous` for the containers that restarted: the `most` with
    the most restarts (those not ready first), five at a time; it says how many it read."""

    def body() -> Check:
        restarted = [
            (p, cs)
            for p in kube.pods()
            for cs in p.get("status", {}).get("containerStatuses") or []
            if cs.get("restartCount")
        ]
        restarted.sort(
            key=lambda pc: (
                bool(pc[1].get("ready")),
                -pc[1]["restartCount"],
                pc[0]["metadata"]["name"],
            )
        )
        chosen = restarted[:most]
        limit = coverage.byte_share(len(chosen))
        texts = coverage.each_bounded(
            chosen,
            lambda pc: _read_log(
                kube,
                pc[0]["metadata"]["name"],
                "no previous log",
                container=pc[1]["name"],
                previous=True,
                tail_lines=tail,
                limit_bytes=limit,
            ),
        )
        rows, shown = [], []
        for (p, cs), text in zip(chosen, texts, strict=True):
            name = p["metadata"]["name"]
            last = [ln for ln in text.splitlines() if ln.strip()]
            term = cs.get("lastState", {}).get("terminated", {})
            rows.append(
                {
                    "pod": name,
                    "container": cs["name"],
                    "restarts": cs["restartCount"],
                    "reason": term.get("reason", ""),
                    "exit_code": term.get("exitCode"),
                    "last_line": last[-1][:200] if last else "",
                }
            )
            shown.append(f"--- {name}/{cs['name']} (previous) ---\n{text}")
        status = Status.WARN if rows else Status.OK
        covered = f"previous logs of {len(rows):,} of {len(restarted):,} restarted container(s)"
        summary = (
            f"{covered}; last: {rows[0]['last_line']}" if rows else "no container has restarted"
        )
        return Check(
            "previous logs",
            TARGET,
            status,
            summary,
            (
                Evidence.table("kubectl logs --previous", rows),
                Evidence(title="previous container logs", text="\n".join(shown)[-8000:]),
            ),
            facts={"crashed": rows, "restarted_total": len(restarted)},
        )

    return _guarded("previous logs", body)


@reads(P.LIST_PODS, P.LIST_EVENTS)
def check_pod_details(kube: Kube, *, most: int = DETAILS_MAX) -> Check:
    """`kubectl describe pod` for the pods that are not ready: conditions, states and last
    event (events by a server-side field selector) of at most `most` of them, crash-looping
    first, five at a time; it says how many of how many it described."""

    def body() -> Check:
        not_ready = [p for p in kube.pods() if not _ready(p)]
        chosen = coverage.select(not_ready, relevant_max=most, only_relevant=True)
        events = coverage.each_bounded(
            chosen.pods(),
            lambda p: kube.events(f"involvedObject.name={p['metadata']['name']}"),
        )
        rows = []
        for p, evs in zip(chosen.pods(), events, strict=True):
            conds = [
                f"{c['type']}={c['status']}" + (f" ({c['reason']})" if c.get("reason") else "")
                for c in p.get("status", {}).get("conditions") or []
            ]
            last = sorted(evs, key=_event_time)[-1] if evs else {}
            rows.append(
                {
                    "pod": p["metadata"]["name"],
                    "status": pod_status(p),
                    "node": p["spec"].get("nodeName"),
                    "conditions": "; ".join(conds),
                    "last_event": f"{last.get('reason', '')}: {last.get('message', '')}"[:200]
                    if last
                    else "",
                }
            )
        status = Status.FAIL if rows else Status.OK
        summary = (
            f"{len(not_ready):,} pod(s) not ready; " + chosen.covered("details", "not-ready pods")
            if rows
            else "every pod ready"
        )
        return Check(
            "pod details",
            TARGET,
            status,
            summary,
            (Evidence.table("kubectl describe pod (not ready)", rows),),
            facts={"not_ready": rows, "not_ready_total": len(not_ready)},
        )

    return _guarded("pod details", body)


# -- logs filtered for a pattern (P1 Execution Failures) ---------------------------------------


@reads(P.LIST_PODS, P.GET_POD_LOG)
def check_log_matches(
    kube: Kube,
    *,
    app: str,
    pattern: str = r"broker|error|fail",
    app_label: str = "app",
    tail: int = 200,
    since_s: int = 600,
) -> Check:
    """`kubectl logs -l app=<app> --tail=200 | grep -i "broker\\|error\\|fail"`, across the
    app's pods, each matching line prefixed by its pod, the latest last."""
    name = f"{app} logs"
    wanted = re.compile(pattern, re.IGNORECASE)

    def body() -> Check:
        rows, matched = [], []
        chosen = coverage.select(kube.pods(f"{app_label}={app}"))
        limit = coverage.byte_share(len(chosen.chosen))
        texts = coverage.each_bounded(
            chosen.pods(),
            lambda p: _read_log(
                kube,
                p["metadata"]["name"],
                "no log",
                tail_lines=tail,
                since_seconds=since_s,
                limit_bytes=limit,
            ),
        )
        for p, text in zip(chosen.pods(), texts, strict=True):
            pod = p["metadata"]["name"]
            hits = [ln for ln in text.splitlines() if wanted.search(ln)]
            errors = [ln for ln in hits if ERROR_LINE.search(ln)]
            rows.append(
                {
                    "pod": pod,
                    "matching": len(hits),
                    "errors": len(errors),
                    "last_error": errors[-1][:200] if errors else "",
                }
            )
            matched += [(ln[:24], f"[{pod}] {ln}") for ln in hits]
        matched.sort()  # by the line's timestamp, across pods
        lines = [ln for _, ln in matched]
        errors = sum(r["errors"] for r in rows)
        return Check(
            name,
            TARGET,
            Status.WARN if errors else Status.OK,
            f"{len(lines)} matching line(s), {errors} error(s); {chosen.covered()}",
            (
                Evidence.table(
                    f"kubectl logs -l {app_label}={app} --tail={tail} | grep -i '{pattern}'", rows
                ),
                Evidence(title="matching lines", text="\n".join(lines[-100:])),
            ),
            facts={
                "matching": len(lines),
                "errors": errors,
                "pods": len(rows),
                "pods_total": chosen.total,
                "last_lines": lines[-20:],
            },
        )

    return _guarded(name, body)


@reads(P.GET_DEPLOYMENT)
def check_deployment_replicas(kube: Kube, *, deployment: str) -> Check:
    """`kubectl get deployment <name>`: desired, ready and available replicas."""
    name = f"{deployment} replicas"

    def body() -> Check:
        dep = kube.deployment(deployment)
        st, want = dep.get("status", {}), dep["spec"].get("replicas", 0)
        row = {
            "deployment": deployment,
            "desired": want,
            "ready": st.get("readyReplicas") or 0,
            "available": st.get("availableReplicas") or 0,
        }
        stopped = want == 0
        summary = "scaled to 0: stopped" if stopped else f"{row['ready']}/{want} ready"
        status = Status.OK if stopped or row["ready"] >= want else Status.WARN
        return Check(
            name,
            TARGET,
            status,
            summary,
            (Evidence.table(f"kubectl get deployment {deployment}", [row]),),
            facts={**row, "stopped": stopped},
        )

    return _guarded(name, body)


@reads(P.LIST_PODS, P.GET_POD_LOG)
def check_oom_kills(kube: Kube, *, app: str, app_label: str = "app", tail: int = 20) -> Check:
    """`kubectl describe pod -l app=<app>` for OOM kills: each container whose last (or
    current) termination was OOMKilled, with its memory limit and the end of its log before
    the kill (`kubectl logs --previous`)."""

    def body() -> Check:
        rows, texts = [], []
        for p in kube.pods(f"{app_label}={app}"):
            name = p["metadata"]["name"]
            limits = {
                c["name"]: (c.get("resources") or {}).get("limits", {}).get("memory", "")
                for c in p["spec"]["containers"]
            }
            for cs in p.get("status", {}).get("containerStatuses") or []:
                state = cs.get("state") or {}
                term = (cs.get("lastState") or {}).get("terminated") or state.get("terminated")
                if not term or term.get("reason") != "OOMKilled":
                    continue
                try:
                    text = kube.log(name, container=cs["name"], previous=True, tail_lines=tail)
                except Refused as e:
                    if e.auth_refused:  # 401/403: the check could not look, never "no log"
                        raise
                    text = f"(no previous log: {e})"
                rows.append(
                    {
                        "pod": name,
                        "container": cs["name"],
                        "ready": bool(cs.get("ready")),
                        "state": pod_status(p),
                        "restarts": cs.get("restartCount", 0),
                        "exit_code": term.get("exitCode"),
                        "memory_limit": limits.get(cs["name"], ""),
                        "killed_at": term.get("finishedAt"),
                    }
                )
                texts.append(f"--- {name}/{cs['name']} (previous) ---\n{text}")
        current = [r for r in rows if not r["ready"]]
        status = Status.FAIL if current else Status.WARN if rows else Status.OK
        summary = (
            f"{len(rows)} container(s) OOMKilled (memory limit "
            f"{', '.join(sorted({r['memory_limit'] for r in rows}))}), {len(current)} not ready"
            if rows
            else f"no {app} container was OOMKilled"
        )
        return Check(
            f"OOM kills {app}",
            TARGET,
            status,
            summary,
            (
                Evidence.table(f"kubectl describe pod -l {app_label}={app} (OOMKilled)", rows),
                Evidence(title="logs before the kill", text="\n".join(texts)[-8000:]),
            ),
            facts={"oom": rows, "current": current, "previous_logs": "\n".join(texts)},
        )

    return _guarded(f"OOM kills {app}", body)
