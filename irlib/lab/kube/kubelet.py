"""The node side of the emulated cluster: node lifecycle, the scheduler and the kubelets.

Nodes go NotReady when the control file says their kubelet stopped; the scheduler binds
pods by requests against allocatable; each kubelet "runs" its pods' containers: start-up,
crash loops and OOM kills from the fault switches, readiness from the real processes' probes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from typing import Any

from irlib.lab.kube import cluster, podlogs, quantity
from irlib.lab.kube.context import NODES, PODS, ContainerRun, Context, PodRun
from irlib.lab.kube.meta import Obj, condition, rfc3339, set_condition

CREATE_DELAY = 0.6  # ContainerCreating: sandbox, image pull
RUN_BEFORE_CRASH = 1.5  # a bad image passes a brief start before it dies
BACKOFF = 3.5  # CrashLoopBackOff wait (a real kubelet doubles it up to 5 min)
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
HEARTBEAT = 60.0


# -- nodes --------------------------------------------------------------------------------


def node_lifecycle(ctx: Context) -> None:
    down = ctx.not_ready_nodes()
    now = ctx.clock()
    stamp = rfc3339(now)
    for node in list(ctx.store.all(NODES)):
        name = node["metadata"]["name"]
        obj = ctx.store.get_copy(NODES, None, name)
        assert obj is not None
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
                fresh = beat and (now - _epoch(beat)) < HEARTBEAT and old.get("status") == st
                _keep(conds, type_, "lastHeartbeatTime", beat if fresh else stamp)
            taints = [t for t in spec.get("taints") or [] if t.get("key") != UNREACHABLE]
            if taints:
                spec["taints"] = taints
            else:
                spec.pop("taints", None)
        ctx.store.update(NODES, obj)
        ready = name not in down
        if ready != was_ready and conds_were_set(node):
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
                            pod, "Warning", "NodeNotReady", "Node is not ready", "node-controller"
                        )


def conds_were_set(node: Obj) -> bool:
    return bool(node.get("status", {}).get("conditions"))


def _epoch(stamp: str) -> float:
    from irlib.lab.kube.meta import parse_time

    return parse_time(stamp) or 0.0


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


# -- scheduler ----------------------------------------------------------------------------


def _requests(pod: Obj) -> tuple[int, int]:
    cpu = mem = 0
    for c in pod["spec"].get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += quantity.millicores(req.get("cpu"))
        mem += int(quantity.parse(req.get("memory")))
    return cpu, mem


def _active(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


def schedule(ctx: Context) -> None:
    pending = [p for p in ctx.store.all(PODS) if not p["spec"].get("nodeName") and _active(p)]
    if not pending:
        return
    pending.sort(key=lambda p: p["metadata"]["creationTimestamp"])
    nodes = sorted(ctx.store.all(NODES), key=lambda n: n["metadata"]["name"])
    used: dict[str, list[int]] = {n["metadata"]["name"]: [0, 0, 0] for n in nodes}
    same_app: Counter[tuple[str, str]] = Counter()
    for p in ctx.store.all(PODS):
        node = p["spec"].get("nodeName")
        if node in used and _active(p):
            cpu, mem = _requests(p)
            used[node][0] += cpu
            used[node][1] += mem
            used[node][2] += 1
            same_app[(node, (p["metadata"].get("labels") or {}).get("app", ""))] += 1
    down = ctx.not_ready_nodes()
    for pod in pending:
        cpu, mem = _requests(pod)
        app = (pod["metadata"].get("labels") or {}).get("app", "")
        selector = pod["spec"].get("nodeSelector") or {}
        reasons: Counter[str] = Counter()
        preemption: Counter[str] = Counter()
        fits = []
        for n in nodes:
            name = n["metadata"]["name"]
            alloc = n["status"].get("allocatable") or {}
            labels = n["metadata"].get("labels") or {}
            if name in down or n["spec"].get("unschedulable"):
                why = (
                    "node(s) were unschedulable"
                    if n["spec"].get("unschedulable")
                    else "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
                )
                reasons[why] += 1
                preemption["Preemption is not helpful for scheduling"] += 1
                continue
            if any(labels.get(k) != v for k, v in selector.items()):
                reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                preemption["Preemption is not helpful for scheduling"] += 1
                continue
            short = []
            if used[name][0] + cpu > quantity.millicores(alloc.get("cpu")):
                short.append("Insufficient cpu")
            if used[name][1] + mem > quantity.parse(alloc.get("memory")):
                short.append("Insufficient memory")
            if used[name][2] + 1 > int(quantity.parse(alloc.get("pods", "110"))):
                short.append("Too many pods")
            if short:
                reasons.update(short)
                preemption["No preemption victims found for incoming pod"] += 1
                continue
            load = used[name][0] / max(quantity.millicores(alloc.get("cpu")), 1)
            fits.append((same_app[(name, app)], load, name))
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


# -- kubelets -----------------------------------------------------------------------------


def _container_id() -> str:
    return "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex


def image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _pod_ip(ctx: Context, node: Obj) -> str:
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0]
    taken = {p["status"].get("podIP") for p in ctx.store.all(PODS)}
    seed = int(hashlib.sha256(str(ctx.clock()).encode()).hexdigest(), 16)
    for i in range(253):
        ip = f"{prefix}.{2 + (seed + i) % 252}"
        if ip not in taken:
            return ip
    raise RuntimeError(f"no pod IP left on {node['metadata']['name']}")


def _record(ctx: Context, pod: Obj, type_: str, reason: str, message: str, container: str) -> None:
    ctx.recorder.record(
        pod,
        type_,
        reason,
        message,
        "kubelet",
        host=pod["spec"].get("nodeName"),
        field_path=f"spec.containers{{{container}}}",
    )


def _start(ctx: Context, pod: Obj, run: ContainerRun, now: float, first: bool) -> None:
    """A new container instance: events, a fresh log."""
    if first:
        _record(
            ctx,
            pod,
            "Normal",
            "Pulled",
            f'Successfully pulled image "{run.image}" in 1.204s (1.204s including waiting). '
            f"Image size: 48213571 bytes.",
            run.name,
        )
    else:
        _record(
            ctx,
            pod,
            "Normal",
            "Pulled",
            f'Container image "{run.image}" already present on machine',
            run.name,
        )
    _record(ctx, pod, "Normal", "Created", f"Created container {run.name}", run.name)
    _record(ctx, pod, "Normal", "Started", f"Started container {run.name}", run.name)
    run.phase, run.since, run.started_at = "running", now, now
    run.container_id = _container_id()
    container = next(c for c in pod["spec"]["containers"] if c["name"] == run.name)
    fault = ctx.fault_for(pod, container)
    run.crash_from = now if fault else None
    lines = cluster.start_log(run.name, run.image)
    if fault and fault.get("log"):
        lines = fault["log"]
    podlogs.start_container(ctx.config.pods_dir, pod["metadata"]["name"], lines, now)


def _crash(ctx: Context, pod: Obj, run: ContainerRun, fault: Obj, now: float) -> None:
    run.last_terminated = {
        "exitCode": fault["exit_code"],
        "reason": fault["reason"],
        "startedAt": rfc3339(run.started_at),
        "finishedAt": rfc3339(now),
        "containerID": run.container_id,
    }
    run.restarts += 1
    run.phase, run.since, run.crash_from = "backoff", now, None
    podlogs.container_exited(ctx.config.pods_dir, pod["metadata"]["name"])
    ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
    _record(
        ctx,
        pod,
        "Warning",
        "BackOff",
        f"Back-off restarting failed container {run.name} in pod {name}_{ns}({uid})",
        run.name,
    )
    if fault["reason"] == "OOMKilled":
        node = ctx.store.get(NODES, None, pod["spec"].get("nodeName", ""))
        if node is not None:
            ctx.recorder.record(
                node,
                "Warning",
                "OOMKilling",
                f"Memory cgroup out of memory: Killed process {4000 + run.restarts} "
                f"({run.name}) total-vm:{2_400_000 + run.restarts}kB, "
                f"anon-rss:{int(quantity.parse(fault.get('limit', '1Gi')) // 1024)}kB, "
                f"file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:2480kB oom_score_adj:984",
                "kernel-monitor",
                host=node["metadata"]["name"],
            )


def _step(ctx: Context, pod: Obj, run: ContainerRun, container: Obj, now: float) -> None:
    """Advance one container through creating -> running -> (crash -> backoff -> running)."""
    fault = ctx.fault_for(pod, container)
    if run.phase == "creating":
        if ctx.bootstrapping or now - run.since >= CREATE_DELAY:
            _start(ctx, pod, run, now, first=True)
    elif run.phase == "running":
        if fault is None:
            run.crash_from = None
        elif run.crash_from is None:
            run.crash_from = now
        elif now - max(run.crash_from, run.started_at) >= RUN_BEFORE_CRASH:
            _crash(ctx, pod, run, fault, now)
    elif run.phase == "backoff" and now - run.since >= BACKOFF:
        _start(ctx, pod, run, now, first=False)


def _container_status(ctx: Context, pod: Obj, run: ContainerRun, node_ok: bool) -> Obj:
    ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
    ok, _ = ctx.probe_results.get(run.name, (True, ""))
    status: Obj = {
        "name": run.name,
        "image": run.image,
        "imageID": "",
        "ready": False,
        "restartCount": run.restarts,
        "started": False,
    }
    if run.phase == "creating":
        status["state"] = {"waiting": {"reason": "ContainerCreating"}}
    elif run.phase == "running":
        status["state"] = {"running": {"startedAt": rfc3339(run.started_at)}}
        status["started"] = True
        status["ready"] = node_ok and ok and run.crash_from is None
    else:
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {_backoff_text(run.restarts)} restarting failed "
                f"container={run.name} pod={name}_{ns}({uid})",
            }
        }
    if run.phase != "creating":
        status["imageID"] = image_id(run.image)
        status["containerID"] = run.container_id
    status["lastState"] = {"terminated": run.last_terminated} if run.last_terminated else {}
    ordered = (
        "name",
        "state",
        "lastState",
        "ready",
        "restartCount",
        "image",
        "imageID",
        "containerID",
        "started",
    )
    return {k: status[k] for k in ordered if k in status}


def _backoff_text(restarts: int) -> str:
    seconds = min(10 * 2 ** max(restarts - 1, 0), 300)
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def _unhealthy(ctx: Context, pod: Obj, run: ContainerRun) -> None:
    ok, message = ctx.probe_results.get(run.name, (True, ""))
    if run.phase == "running" and not ok and run.crash_from is None:
        ctx.recorder.record(
            pod,
            "Warning",
            "Unhealthy",
            f"Readiness probe failed: {message}",
            "kubelet",
            host=pod["spec"].get("nodeName"),
            field_path=f"spec.containers{{{run.name}}}",
            min_interval=10.0,
        )


def run_pods(ctx: Context) -> None:
    """One sync of every bound pod by its node's kubelet."""
    now = ctx.clock()
    down = ctx.not_ready_nodes()
    for pod in list(ctx.store.all(PODS)):
        node_name = pod["spec"].get("nodeName")
        if not node_name:
            continue
        node = ctx.store.get(NODES, None, node_name)
        if node is None:
            continue
        uid = pod["metadata"]["uid"]
        run = ctx.runs.get(uid)
        node_ok = node_name not in down
        if run is None:
            if not node_ok:
                continue  # the kubelet that would start it is not there
            run = PodRun(uid=uid, started=now)
            for c in pod["spec"]["containers"]:
                run.containers[c["name"]] = ContainerRun(c["name"], c["image"], since=now)
                _record(ctx, pod, "Normal", "Pulling", f'Pulling image "{c["image"]}"', c["name"])
            ctx.runs[uid] = run
        if node_ok:
            for c in pod["spec"]["containers"]:
                _step(ctx, pod, run.containers[c["name"]], c, now)
                _unhealthy(ctx, pod, run.containers[c["name"]])
        _write_status(ctx, pod, node, run, node_ok)


def _write_status(ctx: Context, pod: Obj, node: Obj, run: PodRun, node_ok: bool) -> None:
    obj = ctx.store.get_copy(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    if obj is None:
        return
    stamp = rfc3339(ctx.clock())
    status = obj["status"]
    statuses = [
        _container_status(ctx, obj, run.containers[c["name"]], node_ok)
        for c in obj["spec"]["containers"]
    ]
    started = any(r.phase != "creating" or r.restarts for r in run.containers.values())
    all_ready = all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    conds: list[Obj] = status.setdefault("conditions", [])
    set_condition(conds, "PodReadyToStartContainers", "True", stamp)
    set_condition(conds, "Initialized", "True", stamp)
    if not node_ok:
        set_condition(conds, "Ready", "False", stamp, probe_time=True)
        set_condition(conds, "ContainersReady", "False", stamp, probe_time=True)
    elif all_ready:
        set_condition(conds, "Ready", "True", stamp, probe_time=True)
        set_condition(conds, "ContainersReady", "True", stamp, probe_time=True)
    else:
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        set_condition(
            conds, "Ready", "False", stamp, "ContainersNotReady", message, probe_time=True
        )
        set_condition(
            conds, "ContainersReady", "False", stamp, "ContainersNotReady", message, probe_time=True
        )
    set_condition(conds, "PodScheduled", "True", stamp, probe_time=True)
    order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
    conds.sort(key=lambda c: order.index(c["type"]) if c["type"] in order else 99)
    for c in conds:
        if c["type"] in ("PodReadyToStartContainers", "Initialized"):
            c.pop("lastProbeTime", None)
    host_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if not status.get("podIP"):
        ip = _pod_ip(ctx, node)
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    status.setdefault("startTime", rfc3339(run.started))
    status["phase"] = "Running" if started else "Pending"
    status["containerStatuses"] = statuses
    ordered = (
        "phase",
        "conditions",
        "hostIP",
        "hostIPs",
        "podIP",
        "podIPs",
        "startTime",
        "containerStatuses",
        "qosClass",
    )
    obj["status"] = {k: status[k] for k in ordered if k in status} | {
        k: v for k, v in status.items() if k not in ordered
    }
    ctx.store.update(PODS, obj)


def forget(ctx: Context, pod: Obj) -> None:
    """A pod was deleted: its kubelet stops the containers and its logs go."""
    run = ctx.runs.pop(pod["metadata"]["uid"], None)
    if run is not None and pod["spec"].get("nodeName"):
        for c in run.containers.values():
            _record(ctx, pod, "Normal", "Killing", f"Stopping container {c.name}", c.name)
    podlogs.remove(ctx.config.pods_dir, pod["metadata"]["name"])
