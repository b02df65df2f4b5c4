"""Server-side printing: `meta.k8s.io/v1 Table` answers for `kubectl get`.

Columns and cell rules follow the apiserver's printers (pkg/printers/internalversion), so
that kubectl prints what it would print against a cluster; wide-only columns have priority 1.
Pure functions of the objects and the current time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from irlib.lab.kube.meta import Obj, age, condition, human_duration, parse_time
from irlib.lab.kube.selectors import selector_string

Column = tuple[str, str, int]  # name, type/format, priority
Printer = tuple[list[Column], Callable[[Obj, float], list[Any]]]

NAME: Column = ("Name", "name", 0)
AGE: Column = ("Age", "string", 0)


def _none(value: str) -> str:
    return value or "<none>"


def _containers(spec: Obj) -> tuple[str, str]:
    containers = spec.get("containers") or []
    return (
        ",".join(c["name"] for c in containers),
        ",".join(c.get("image", "") for c in containers),
    )


# -- pods ---------------------------------------------------------------------------------


def pod_row(pod: Obj, now: float) -> list[Any]:
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    restarts = 0
    ready = 0
    last_restart: float | None = None
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += cs.get("restartCount", 0)
        finished = parse_time(
            ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
        )
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            t = state["terminated"]
            reason = (
                f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode', 0)}"
            )
        elif cs.get("ready") and "running" in state:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        ready_cond = condition(pod, "Ready")
        reason = "Running" if ready_cond and ready_cond.get("status") == "True" else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        restarts_text = f"{restarts} ({human_duration(now - last_restart)} ago)"
    ip = ((status.get("podIPs") or [{}])[0]).get("ip") or status.get("podIP") or ""
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
        gates_text = f"{sum(1 for g in gates if g.get('conditionType') in true)}/{len(gates)}"
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(spec.get('containers') or [])}",
        reason,
        restarts_text,
        age(pod["metadata"].get("creationTimestamp"), now),
        _none(ip),
        _none(spec.get("nodeName", "")),
        _none(status.get("nominatedNodeName", "")),
        gates_text,
    ]


POD: Printer = (
    [
        NAME,
        ("Ready", "string", 0),
        ("Status", "string", 0),
        ("Restarts", "string", 0),
        AGE,
        ("IP", "string", 1),
        ("Node", "string", 1),
        ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1),
    ],
    pod_row,
)


# -- workloads ----------------------------------------------------------------------------


def deployment_row(d: Obj, now: float) -> list[Any]:
    st = d.get("status") or {}
    names, images = _containers(d["spec"]["template"].get("spec") or {})
    return [
        d["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{d['spec'].get('replicas', 0)}",
        st.get("updatedReplicas", 0),
        st.get("availableReplicas", 0),
        age(d["metadata"].get("creationTimestamp"), now),
        names,
        images,
        _none(selector_string(d["spec"].get("selector"))),
    ]


DEPLOYMENT: Printer = (
    [
        NAME,
        ("Ready", "string", 0),
        ("Up-to-date", "integer", 0),
        ("Available", "integer", 0),
        AGE,
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ],
    deployment_row,
)


def replicaset_row(rs: Obj, now: float) -> list[Any]:
    st = rs.get("status") or {}
    names, images = _containers(rs["spec"]["template"].get("spec") or {})
    return [
        rs["metadata"]["name"],
        rs["spec"].get("replicas", 0),
        st.get("replicas", 0),
        st.get("readyReplicas", 0),
        age(rs["metadata"].get("creationTimestamp"), now),
        names,
        images,
        _none(selector_string(rs["spec"].get("selector"))),
    ]


REPLICASET: Printer = (
    [
        NAME,
        ("Desired", "integer", 0),
        ("Current", "integer", 0),
        ("Ready", "integer", 0),
        AGE,
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ],
    replicaset_row,
)


def statefulset_row(s: Obj, now: float) -> list[Any]:
    st = s.get("status") or {}
    names, images = _containers(s["spec"]["template"].get("spec") or {})
    return [
        s["metadata"]["name"],
        f"{st.get('readyReplicas', 0)}/{s['spec'].get('replicas', 0)}",
        age(s["metadata"].get("creationTimestamp"), now),
        names,
        images,
    ]


STATEFULSET: Printer = (
    [NAME, ("Ready", "string", 0), AGE, ("Containers", "string", 1), ("Images", "string", 1)],
    statefulset_row,
)


def cronjob_row(cj: Obj, now: float) -> list[Any]:
    spec, st = cj.get("spec") or {}, cj.get("status") or {}
    job = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _containers((job.get("template") or {}).get("spec") or {})
    suspend = spec.get("suspend")
    last = st.get("lastScheduleTime")
    return [
        cj["metadata"]["name"],
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        "<unset>" if suspend is None else str(bool(suspend)),
        len(st.get("active") or []),
        age(last, now) if last else "<none>",
        age(cj["metadata"].get("creationTimestamp"), now),
        names,
        images,
        _none(selector_string(job.get("selector"))),
    ]


CRONJOB: Printer = (
    [
        NAME,
        ("Schedule", "string", 0),
        ("Timezone", "string", 0),
        ("Suspend", "boolean", 0),
        ("Active", "integer", 0),
        ("Last Schedule", "string", 0),
        AGE,
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ],
    cronjob_row,
)


# -- nodes, namespaces, events ------------------------------------------------------------


def node_row(n: Obj, now: float) -> list[Any]:
    status = n.get("status") or {}
    ready = condition(n, "Ready")
    states = ["Ready" if ready and ready.get("status") == "True" else "NotReady"]
    if (n.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = sorted(
        k.split("/", 1)[1]
        for k in (n["metadata"].get("labels") or {})
        if k.startswith("node-role.kubernetes.io/")
    )
    addresses = {a["type"]: a["address"] for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        n["metadata"]["name"],
        ",".join(states),
        ",".join(roles) or "<none>",
        age(n["metadata"].get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        _none(addresses.get("InternalIP", "")),
        _none(addresses.get("ExternalIP", "")),
        info.get("osImage", "<unknown>"),
        info.get("kernelVersion", "<unknown>"),
        info.get("containerRuntimeVersion", "<unknown>"),
    ]


NODE: Printer = (
    [
        NAME,
        ("Status", "string", 0),
        ("Roles", "string", 0),
        AGE,
        ("Version", "string", 0),
        ("Internal-IP", "string", 1),
        ("External-IP", "string", 1),
        ("OS-Image", "string", 1),
        ("Kernel-Version", "string", 1),
        ("Container-Runtime", "string", 1),
    ],
    node_row,
)

NAMESPACE: Printer = (
    [NAME, ("Status", "string", 0), AGE],
    lambda ns, now: [
        ns["metadata"]["name"],
        (ns.get("status") or {}).get("phase", ""),
        age(ns["metadata"].get("creationTimestamp"), now),
    ],
)


def event_row(e: Obj, now: float) -> list[Any]:
    first = age(e.get("firstTimestamp"), now)
    if not e.get("firstTimestamp"):
        first = age(e.get("eventTime"), now)
    last = age(e.get("lastTimestamp"), now) if e.get("lastTimestamp") else first
    count = e.get("count") or 1
    if count > 1:
        last = f"{last} (x{count} over {first})"
    obj = e.get("involvedObject") or {}
    source = e.get("source") or {}
    source_text = source.get("component") or e.get("reportingComponent", "")
    if source.get("host"):
        source_text = f"{source_text}, {source['host']}"
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        f"{obj.get('kind', '').lower()}/{obj.get('name', '')}",
        obj.get("fieldPath", ""),
        source_text,
        e.get("message", "").strip(),
        first,
        count,
        e["metadata"]["name"],
    ]


EVENT: Printer = (
    [
        ("Last Seen", "string", 0),
        ("Type", "string", 0),
        ("Reason", "string", 0),
        ("Object", "string", 0),
        ("Subobject", "string", 1),
        ("Source", "string", 1),
        ("Message", "string", 0),
        ("First Seen", "string", 1),
        ("Count", "string", 1),
        ("Name", "name", 1),
    ],
    event_row,
)


# -- networking ---------------------------------------------------------------------------


def _service_ports(spec: Obj) -> str:
    out = []
    for p in spec.get("ports") or []:
        text = f"{p['port']}"
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        out.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def service_row(s: Obj, now: float) -> list[Any]:
    spec = s.get("spec") or {}
    external = [
        i.get("ip") or i.get("hostname")
        for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ]
    external += spec.get("externalIPs") or []
    if spec.get("type") == "LoadBalancer" and not external:
        external_text = "<pending>"
    else:
        external_text = ",".join(x for x in external if x) or "<none>"
    selector = spec.get("selector") or {}
    return [
        s["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", ""),
        external_text,
        _service_ports(spec),
        age(s["metadata"].get("creationTimestamp"), now),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
    ]


SERVICE: Printer = (
    [
        NAME,
        ("Type", "string", 0),
        ("Cluster-IP", "string", 0),
        ("External-IP", "string", 0),
        ("Port(s)", "string", 0),
        AGE,
        ("Selector", "string", 1),
    ],
    service_row,
)


def endpoints_row(ep: Obj, now: float) -> list[Any]:
    pairs = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for a in subset.get("addresses") or []:
            for p in ports:
                pairs.append(f"{a['ip']}:{p['port']}" if p.get("port") else a["ip"])
    text = ",".join(pairs[:3])
    if len(pairs) > 3:
        text += f" + {len(pairs) - 3} more..."
    return [
        ep["metadata"]["name"],
        text or "<none>",
        age(ep["metadata"].get("creationTimestamp"), now),
    ]


def endpointslice_row(es: Obj, now: float) -> list[Any]:
    ports = ",".join(str(p.get("port", "")) for p in es.get("ports") or []) or "<unset>"
    addresses = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    text = ",".join(addresses[:3])
    if len(addresses) > 3:
        text += f" + {len(addresses) - 3} more..."
    return [
        es["metadata"]["name"],
        es.get("addressType", ""),
        ports,
        text or "<unset>",
        age(es["metadata"].get("creationTimestamp"), now),
    ]


ENDPOINTSLICE: Printer = (
    [NAME, ("AddressType", "string", 0), ("Ports", "string", 0), ("Endpoints", "string", 0), AGE],
    endpointslice_row,
)

ENDPOINTS: Printer = ([NAME, ("Endpoints", "string", 0), AGE], endpoints_row)


def ingress_row(i: Obj, now: float) -> list[Any]:
    spec = i.get("spec") or {}
    hosts = [r.get("host") or "*" for r in spec.get("rules") or []]
    lb = ((i.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = ",".join(x.get("ip") or x.get("hostname") or "" for x in lb)
    return [
        i["metadata"]["name"],
        spec.get("ingressClassName") or "<none>",
        ",".join(hosts) or "*",
        address,
        "80, 443" if spec.get("tls") else "80",
        age(i["metadata"].get("creationTimestamp"), now),
    ]


INGRESS: Printer = (
    [
        NAME,
        ("Class", "string", 0),
        ("Hosts", "string", 0),
        ("Address", "string", 0),
        ("Ports", "string", 0),
        AGE,
    ],
    ingress_row,
)


def serviceaccount_row(sa: Obj, now: float) -> list[Any]:
    return [
        sa["metadata"]["name"],
        len(sa.get("secrets") or []),
        age(sa["metadata"].get("creationTimestamp"), now),
    ]


SERVICEACCOUNT: Printer = ([NAME, ("Secrets", "integer", 0), AGE], serviceaccount_row)


def binding_row(b: Obj, now: float) -> list[Any]:
    ref = b.get("roleRef") or {}
    subjects = b.get("subjects") or []

    def names(kind: str) -> str:
        return ", ".join(
            (f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount"
             else s.get("name", ""))
            for s in subjects
            if s.get("kind") == kind
        )  # fmt: skip

    return [
        b["metadata"]["name"],
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        age(b["metadata"].get("creationTimestamp"), now),
        names("User"),
        names("Group"),
        names("ServiceAccount"),
    ]


BINDING: Printer = (
    [
        NAME,
        ("Role", "string", 0),
        AGE,
        ("Users", "string", 1),
        ("Groups", "string", 1),
        ("ServiceAccounts", "string", 1),
    ],
    binding_row,
)

GENERIC: Printer = (
    [NAME, ("Created At", "date", 0)],
    lambda o, now: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")],
)

PRINTERS: dict[str, Printer] = {
    "Pod": POD,
    "Deployment": DEPLOYMENT,
    "ReplicaSet": REPLICASET,
    "StatefulSet": STATEFULSET,
    "CronJob": CRONJOB,
    "Node": NODE,
    "Namespace": NAMESPACE,
    "Event": EVENT,
    "Service": SERVICE,
    "Endpoints": ENDPOINTS,
    "EndpointSlice": ENDPOINTSLICE,
    "Ingress": INGRESS,
    "ServiceAccount": SERVICEACCOUNT,
    "RoleBinding": BINDING,
    "ClusterRoleBinding": BINDING,
}

DESCRIPTIONS = {
    "Name": "Name must be unique within a namespace. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    "Age": "CreationTimestamp is a timestamp representing the server time when this object "
    "was created.",
}


def table(kind: str, objects: list[Obj], include: str, resource_version: str) -> Obj:
    """A Table of `objects`; `include` is the request's includeObject (None|Metadata|Object)."""
    columns, row = PRINTERS.get(kind, GENERIC)
    now = time.time()
    rows = []
    for obj in objects:
        entry: Obj = {"cells": row(obj, now)}
        if include == "Object":
            entry["object"] = obj
        elif include != "None":
            entry["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string" if kind_ in ("name", "date") else kind_,
                "format": kind_ if kind_ in ("name", "date") else "",
                "description": DESCRIPTIONS.get(name, name),
                "priority": priority,
            }
            for name, kind_, priority in columns
        ],
        "rows": rows,
    }
