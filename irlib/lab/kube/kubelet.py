"""The kubelets: each bound pod's containers "run" here, reported as a real kubelet would.
Containers start (writing their log), are ready when the real process behind their probe
answers (probes.py), and crash-loop or get OOM-killed under the lab's fault switches, with
restarts, back-off, `lastState`, previous logs and events. A NotReady node's kubelet is idle.
"""

from __future__ import annotations

import hashlib
import random
import uuid

from irlib.k8s import quantity
from irlib.lab.kube import cluster, nodes, podlogs, probes
from irlib.lab.kube.context import NODES, PODS, ContainerRun, Context, PodRun
from irlib.lab.kube.meta import Obj, rfc3339, set_condition

CREATE_DELAY = 0.6  # ContainerCreating: sandbox, image pull
RUN_BEFORE_CRASH = 1.0  # a bad image passes a brief start before it dies
BACKOFF = 4.0  # CrashLoopBackOff wait (a real kubelet doubles it up to 5 min)


def _container_id() -> str:
    return "containerd://" + uuid.uuid4().hex + uuid.uuid4().hex


def image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _pod_ip(ctx: Context, node: Obj, taken: set[str]) -> str:
    """A free address of the node's pod CIDR; `taken` (every pod's, read once per pass: a
    scan per new pod made a 2,000-pod start quadratic) gets it added."""
    prefix = node["spec"]["podCIDR"].rsplit(".", 1)[0]
    seed = random.randrange(252)
    for i in range(253):
        ip = f"{prefix}.{2 + (seed + i) % 252}"
        if ip not in taken:
            taken.add(ip)
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


def _container_status(
    ctx: Context, pod: Obj, run: ContainerRun, container: Obj, node_ok: bool
) -> Obj:
    ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
    ok = probe_ok(ctx, run, container)
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


def probe_ok(ctx: Context, run: ContainerRun, container: Obj) -> bool:
    """A container without a readinessProbe is ready once running, as on a real kubelet."""
    if not container.get("readinessProbe"):
        return True
    return ctx.probe_results.get(run.name, (True, ""))[0]


def _unhealthy(ctx: Context, pod: Obj, run: ContainerRun, container: Obj) -> None:
    _, cause = ctx.probe_results.get(run.name, (True, ""))
    if run.phase == "running" and not probe_ok(ctx, run, container) and run.crash_from is None:
        spec = container.get("readinessProbe") or {}
        message = probes.message(cause, spec, pod.get("status", {}).get("podIP", ""))
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
    pods = list(ctx.store.all(PODS))
    taken = {ip for p in pods if (ip := (p.get("status") or {}).get("podIP"))}
    for pod in pods:
        with ctx.health.guard("kubelet", pod):
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
                    _record(
                        ctx, pod, "Normal", "Pulling", f'Pulling image "{c["image"]}"', c["name"]
                    )
                ctx.runs[uid] = run
            if node_ok:
                for c in pod["spec"]["containers"]:
                    container = run.containers.setdefault(
                        c["name"], ContainerRun(c["name"], c["image"], since=now)
                    )
                    if container.image != c["image"]:  # a patched pod: the kubelet restarts it
                        container.image = c["image"]
                        container.phase, container.since = "backoff", 0.0
                    _step(ctx, pod, container, c, now)
                    _unhealthy(ctx, pod, container, c)
            inputs = _status_inputs(ctx, pod, run, node_ok)
            if ctx.status_inputs.get(uid) == (pod["metadata"]["resourceVersion"], inputs):
                continue  # nothing it reports changed: skip the copy and the rewrite
            written = _write_status(ctx, pod, node, run, node_ok, taken)
            if written is not None:
                ctx.status_inputs[uid] = (written["metadata"]["resourceVersion"], inputs)


def _status_inputs(ctx: Context, pod: Obj, run: PodRun, node_ok: bool) -> tuple[object, ...]:
    """Everything a pod's status is made from (its containers' runs, probes, the node): the
    same inputs and the same stored pod make the same status, so a kubelet of a 2,000-pod lab
    rewrites only the pods that changed."""
    specs = {c["name"]: c for c in pod["spec"]["containers"]}
    return (
        node_ok,
        tuple(
            (
                r.name,
                r.image,
                r.phase,
                r.started_at,
                r.container_id,
                r.restarts,
                r.crash_from is None,
                repr(r.last_terminated),
                probe_ok(ctx, r, specs[r.name]) if r.name in specs else None,
            )
            for r in run.containers.values()
        ),
    )


def _write_status(
    ctx: Context, pod: Obj, node: Obj, run: PodRun, node_ok: bool, taken: set[str]
) -> Obj | None:
    obj = ctx.store.get_copy(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
    if obj is None:
        return None
    stamp = rfc3339(ctx.clock())
    status = obj["status"]
    statuses = [
        _container_status(ctx, obj, run.containers[c["name"]], c, node_ok)
        for c in obj["spec"]["containers"]
        if c["name"] in run.containers
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
    host_ip = nodes.internal_ip(node)
    status["hostIP"] = host_ip
    status["hostIPs"] = [{"ip": host_ip}]
    if not status.get("podIP"):
        ip = _pod_ip(ctx, node, taken)
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
    return ctx.store.update(PODS, obj)


def forget(ctx: Context, pod: Obj) -> None:
    """A pod was deleted: its kubelet stops the containers and its logs go."""
    ctx.status_inputs.pop(pod["metadata"]["uid"], None)
    run = ctx.runs.pop(pod["metadata"]["uid"], None)
    if run is not None and pod["spec"].get("nodeName"):
        for c in run.containers.values():
            _record(ctx, pod, "Normal", "Killing", f"Stopping container {c.name}", c.name)
    podlogs.remove(ctx.config.pods_dir, pod["metadata"]["name"])
