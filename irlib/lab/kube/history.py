"""The past of a big lab (`irlib lab up --events E`): E events over the last hour, as a
running platform's kubelets, scheduler and controllers leave them (mostly Normal; some
Warning, none in the last quarter hour: the cluster is healthy now), and the access-log
lines its api-service pods wrote meanwhile. Written once, when the controller has built the
cluster; the events then expire as the apiserver's --event-ttl expires them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from irlib.lab.kube import podlogs
from irlib.lab.kube.context import DEPLOYMENTS, NODES, PODS, REPLICASETS, Context
from irlib.lab.kube.events import EVENTS, TTL, event_object
from irlib.lab.kube.meta import Obj, random_suffix

SPAN = (TTL - 300.0, 120.0)  # events from 55 min to 2 min ago
QUIET = 900.0  # no Warning in the last 15 minutes
WARNING_SHARE = 0.08
ROUTES = (
    ("GET", "/v1/market-data/SPY/latest", 200),
    ("GET", "/v1/market-data/AAPL/latest", 200),
    ("GET", "/v1/calibration/status", 200),
    ("GET", "/v1/positions", 200),
    ("POST", "/v1/orders", 201),
    ("GET", "/health", 200),
)


class _Writer:
    def __init__(self, ctx: Context, rng: random.Random) -> None:
        self.ctx, self.rng = ctx, rng
        self.namespace = ctx.config.namespace
        self.seq = 0

    def event(
        self,
        obj: Obj,
        type_: str,
        reason: str,
        message: str,
        component: str,
        *,
        host: str | None = None,
        field_path: str | None = None,
    ) -> None:
        now = self.ctx.clock()
        latest = now - (QUIET if type_ == "Warning" else SPAN[1])
        last = self.rng.uniform(now - SPAN[0], latest)
        count = self.rng.choice((1, 1, 1, 2, 3)) if type_ == "Warning" else 1
        first = last - (count - 1) * self.rng.uniform(10, 60)
        self.seq += 1
        name = f"{obj['metadata']['name']}.{int(last * 1e9) + self.seq:x}"
        event = event_object(
            obj, type_, reason, message, component, name=name, first=first, last=last,
            count=count, host=host, field_path=field_path,
        )  # fmt: skip
        self.ctx.store.create(EVENTS, event, timestamp=first)


def write_history(ctx: Context, count: int, progress: Callable[[str], None]) -> None:
    """`count` events of the last hour, and the api-service pods' access logs to match."""
    if count <= 0:
        return
    rng = random.Random(count)
    w = _Writer(ctx, rng)
    pods = list(ctx.store.all(PODS, ctx.config.namespace))
    nodes = list(ctx.store.all(NODES))
    deployments = list(ctx.store.all(DEPLOYMENTS, ctx.config.namespace))
    replicasets = [
        r for r in ctx.store.all(REPLICASETS, ctx.config.namespace) if r["spec"].get("replicas")
    ]
    if not pods:
        return
    for i in range(count):
        if i % 5000 == 0:
            progress(f"writing event history: {i} of {count}")
        roll = rng.random()
        if roll < WARNING_SHARE:
            _warning(w, rng.choice(pods), rng)
        elif roll < 0.9 or not replicasets:
            _pod_event(w, rng.choice(pods), rng)
        elif roll < 0.95:
            rs = rng.choice(replicasets)
            gone = f"{rs['metadata']['name']}-{random_suffix()}"
            verb = rng.choice(("Created", "Deleted"))
            reason = "SuccessfulCreate" if verb == "Created" else "SuccessfulDelete"
            w.event(rs, "Normal", reason, f"{verb} pod: {gone}", "replicaset-controller")
        elif roll < 0.98 and deployments:
            dep = rng.choice(deployments)
            mine = [
                r["metadata"]["name"]
                for r in replicasets
                if r["metadata"]["name"].startswith(dep["metadata"]["name"] + "-")
            ]
            n = dep["spec"].get("replicas", 1)
            if mine:
                w.event(
                    dep,
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled up replica set {mine[0]} from {n} to {n + 1}",
                    "deployment-controller",
                )
        elif nodes:
            node = rng.choice(nodes)
            name = node["metadata"]["name"]
            w.event(
                node,
                "Normal",
                "NodeHasSufficientMemory",
                f"Node {name} status is now: NodeHasSufficientMemory",
                "kubelet",
                host=name,
            )
    progress(f"writing event history: {count} of {count}")
    _access_logs(ctx, pods, count, rng)


def _pod_event(w: _Writer, pod: Obj, rng: random.Random) -> None:
    c = pod["spec"]["containers"][0]
    node = pod["spec"].get("nodeName") or ""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    field = f"spec.containers{{{c['name']}}}"
    reason, message, component = rng.choice(
        (
            ("Scheduled", f"Successfully assigned {ns}/{name} to {node}", "default-scheduler"),
            ("Pulled", f'Container image "{c["image"]}" already present on machine', "kubelet"),
            ("Created", f"Created container {c['name']}", "kubelet"),
            ("Started", f"Started container {c['name']}", "kubelet"),
            ("Killing", f"Stopping container {c['name']}", "kubelet"),
        )
    )
    w.event(pod, "Normal", reason, message, component, host=node, field_path=field)


def _warning(w: _Writer, pod: Obj, rng: random.Random) -> None:
    c = pod["spec"]["containers"][0]
    node = pod["spec"].get("nodeName") or ""
    ip = (pod.get("status") or {}).get("podIP", "")
    port = (c.get("ports") or [{}])[0].get("containerPort", 8080)
    reason, message = rng.choice(
        (
            (
                "Unhealthy",
                f'Readiness probe failed: Get "http://{ip}:{port}/livez": context deadline '
                "exceeded (Client.Timeout exceeded while awaiting headers)",
            ),
            ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503"),
            (
                "DNSConfigForming",
                "Nameserver limits were exceeded, some nameservers have been omitted, the "
                "applied nameserver line is: 10.96.0.10 169.254.169.253 10.0.0.2",
            ),
        )
    )
    w.event(
        pod,
        "Warning",
        reason,
        message,
        "kubelet",
        host=node,
        field_path=f"spec.containers{{{c['name']}}}",
    )


def _access_logs(ctx: Context, pods: list[Obj], events: int, rng: random.Random) -> None:
    """Each api-service pod's access log over the last hour: requests served, a rare slow one
    (WARN), never an error; about as many lines in all as events, 5 to 40 per pod."""
    api = [p for p in pods if (p["metadata"].get("labels") or {}).get("app") == "api-service"]
    if not api:
        return
    per_pod = min(40, max(5, events // max(len(api), 1)))
    now = ctx.clock()
    for pod in api:
        stamps = sorted(rng.uniform(now - TTL, now - 60) for _ in range(per_pod))
        lines = []
        for ts in stamps:
            method, route, code = rng.choice(ROUTES)
            ms = rng.lognormvariate(1.2, 0.6)
            level = "WARN" if ms > 40 else "INFO"
            lines.append(f"{podlogs.stamp(ts)} {level} {method} {route} {code} {ms:.1f}ms")
        _append(podlogs.path(ctx.config.pods_dir, pod["metadata"]["name"]), lines)


def _append(file: Path, lines: list[str]) -> None:
    with open(file, "a") as f:
        f.write("".join(line + "\n" for line in lines))
