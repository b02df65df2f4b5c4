"""The endpoints controllers: each Service's ready and not-ready pod addresses, written as
core v1 Endpoints (what the lab's api process reads to know its ready pods) and as a
discovery.k8s.io/v1 EndpointSlice (what `kubectl describe service|ingress` reads).
"""

from __future__ import annotations

import copy

from irlib.lab.kube.context import ENDPOINTS, ENDPOINTSLICES, NODES, PODS, SERVICES, Context
from irlib.lab.kube.meta import Obj, owner_ref, pod_ready, rfc3339
from irlib.lab.kube.resources import Resource

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
API_SERVER_IP = "10.0.0.10"


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


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(x) for x in ip.split("."))


def _backends(ctx: Context, svc: Obj) -> tuple[list[Obj], list[Obj]]:
    """(pods behind the service, its ports resolved against them), pods sorted by IP."""
    ns, selector = svc["metadata"]["namespace"], svc["spec"].get("selector") or {}
    pods = [
        p
        for p in ctx.store.all(PODS, ns)
        if p.get("status", {}).get("podIP")
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    pods.sort(key=lambda p: _ip_key(p["status"]["podIP"]))
    ports: list[Obj] = []
    for p in svc["spec"].get("ports") or []:
        target = _target_port(p, pods[0]) if pods else None
        if target is not None:
            entry = {"name": p["name"]} if p.get("name") else {}
            ports.append({**entry, "port": target, "protocol": p.get("protocol", "TCP")})
    return pods, ports


def _address(pod: Obj, svc_name: str) -> Obj:
    address: Obj = {"ip": pod["status"]["podIP"]}
    if pod["spec"].get("hostname") and pod["spec"].get("subdomain") == svc_name:
        address["hostname"] = pod["spec"]["hostname"]
    address["nodeName"] = pod["spec"].get("nodeName")
    meta = pod["metadata"]
    address["targetRef"] = {
        "kind": "Pod",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
    }
    return address


def _write(
    ctx: Context, res: Resource, ns: str, name: str, obj: Obj, fields: tuple[str, ...]
) -> None:
    stored = ctx.store.get(res, ns, name)
    if stored is None:
        ctx.store.create(res, obj)
        return
    if all(stored.get(f) == obj.get(f) for f in fields) and stored["metadata"].get("labels") == obj[
        "metadata"
    ].get("labels"):
        return  # compared before copying: a 2,000-pod service's copy each pass is costly
    old = copy.deepcopy(stored)
    old["metadata"]["labels"] = obj["metadata"].get("labels")
    annotations = old["metadata"].setdefault("annotations", {})
    annotations["endpoints.kubernetes.io/last-change-trigger-time"] = rfc3339(ctx.clock())
    for f in fields:
        old.pop(f, None)
        if f in obj:
            old[f] = obj[f]
    ctx.store.update(res, old)


def _endpoints(ctx: Context, svc: Obj, pods: list[Obj], ports: list[Obj]) -> None:
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    ready = [_address(p, name) for p in pods if pod_ready(p)]
    not_ready = [_address(p, name) for p in pods if not pod_ready(p)]
    subset: Obj = {}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    ep: Obj = {
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": dict(svc["metadata"].get("labels") or {}),
        }
    }
    if subset and ports:
        ep["subsets"] = [{**subset, "ports": ports}]
    _write(ctx, ENDPOINTS, ns, name, ep, ("subsets",))


def _slice(ctx: Context, svc: Obj, pods: list[Obj], ports: list[Obj]) -> None:
    ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
    zones = {
        n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(
            "topology.kubernetes.io/zone"
        )
        for n in ctx.store.all(NODES)
    }
    endpoints = []
    for pod in pods:
        ready = pod_ready(pod)
        entry: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
        }
        address = _address(pod, name)
        if "hostname" in address:
            entry["hostname"] = address["hostname"]
        entry["nodeName"] = address["nodeName"]
        entry["targetRef"] = address["targetRef"]
        if zones.get(address["nodeName"]):
            entry["zone"] = zones[address["nodeName"]]
        endpoints.append(entry)
    labels = {
        **(svc["metadata"].get("labels") or {}),
        MANAGED_BY: "endpointslice-controller.k8s.io",
        SERVICE_NAME: name,
    }
    existing = next(
        (
            s
            for s in ctx.store.all(ENDPOINTSLICES, ns)
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
        ),
        None,
    )
    obj: Obj = {
        "metadata": {
            "generateName": f"{name}-",
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [owner_ref(svc)],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }
    if ports:
        obj["ports"] = ports
    if existing is None:
        ctx.store.create(ENDPOINTSLICES, obj)
    else:
        _write(ctx, ENDPOINTSLICES, ns, existing["metadata"]["name"], obj, ("endpoints", "ports"))


def _apiserver(ctx: Context) -> None:
    if ctx.store.get(ENDPOINTS, "default", "kubernetes") is None:
        ctx.store.create(
            ENDPOINTS,
            {
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
                },
                "subsets": [
                    {
                        "addresses": [{"ip": API_SERVER_IP}],
                        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
                    }
                ],
            },
        )


def sync_endpoints(ctx: Context) -> None:
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in ctx.store.all(SERVICES)
    }
    for ep in list(ctx.store.all(ENDPOINTS)):
        key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
        if key not in services:
            ctx.store.delete(ENDPOINTS, *key)
    for (ns, name), svc in services.items():
        with ctx.health.guard("endpoints", svc):
            if not svc["spec"].get("selector"):
                if (ns, name) == ("default", "kubernetes"):
                    _apiserver(ctx)
                continue
            pods, ports = _backends(ctx, svc)
            _endpoints(ctx, svc, pods, ports)
            _slice(ctx, svc, pods, ports)
