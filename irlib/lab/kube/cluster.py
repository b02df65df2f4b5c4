"""The trading platform's cluster as the emulator starts it: nodes, namespaces, workloads,
services, the ingress and api-service's rollout history (`populate`), and `probe_table`:
the one place that says which real lab process makes which container ready.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from irlib.lab.config import LabConfig
from irlib.lab.kube import defaults
from irlib.lab.kube.meta import Obj, owner_ref, template_hash
from irlib.lab.kube.probes import Probe, http, tcp
from irlib.lab.kube.resources import resource
from irlib.lab.kube.store import Store

REGISTRY = "registry.example.com/trading"
ZONES = ("eu-west-1a", "eu-west-1b", "eu-west-1c")
# the machine shape of a node whose kubelet reports none (nodes.register), and of today's lab
NODE_CPU, NODE_MEMORY, NODE_PODS = "4", "16Gi", "110"
NODE_TYPE = "m5.xlarge"
KUBELET_VERSION = "v1.32.4"
DAY = 86400.0
CLUSTER_AGE = 97 * DAY  # nodes and system namespaces
PLATFORM_AGE = 41 * DAY  # the trading namespace and its workloads
REVISION_1_AGE = 41 * DAY
API_HISTORY = (  # (tag, change-cause) of api-service's revisions, oldest first
    ("1.8.1", "deploy api-service 1.8.1"),
    ("1.8.2", "deploy api-service 1.8.2: faster order book snapshots"),
)


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # Deployment | StatefulSet
    replicas: int
    tag: str
    port: int
    requests: dict[str, str]
    limits: dict[str, str]
    usage: tuple[int, int]  # typical CPU millicores and memory MiB of one pod (metrics)
    readiness: dict[str, Any] | None = None
    service_port: int | None = None  # None: the container port
    headless: bool = False
    start_log: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.tag}"


WORKLOADS = (
    Workload(
        name="api-service",
        kind="Deployment",
        replicas=3,
        tag=API_HISTORY[-1][0],
        port=8080,
        requests={"cpu": "250m", "memory": "512Mi"},
        limits={"cpu": "1", "memory": "1Gi"},
        usage=(120, 350),
        readiness={"httpGet": {"path": "/livez", "port": 8080}, "periodSeconds": 5},
        service_port=80,
        start_log=(
            "INFO starting api-service {version} on :{port}",
            "INFO connected to timescaledb-0.timescaledb:5432 (pool size 20)",
            "INFO connected to redis-0.redis:6379",
        ),
        env={"TRADING_DB_POOL_SIZE": "20", "LOG_LEVEL": "info"},
    ),
    Workload(
        name="execution-service",
        kind="Deployment",
        replicas=2,
        tag="2.4.0",
        port=8081,
        requests={"cpu": "200m", "memory": "256Mi"},
        limits={"cpu": "500m", "memory": "512Mi"},
        usage=(80, 210),
        readiness={"httpGet": {"path": "/livez", "port": 8081}, "periodSeconds": 5},
        start_log=(
            "INFO starting execution-service {version} on :{port}",
            "INFO broker session established (FIX 4.4)",
        ),
    ),
    Workload(
        name="calibration-service",
        kind="Deployment",
        replicas=2,
        tag="0.9.3",
        port=8082,
        requests={"cpu": "500m", "memory": "1Gi"},
        limits={"cpu": "2", "memory": "2Gi"},
        usage=(400, 1200),
        readiness={"httpGet": {"path": "/livez", "port": 8082}, "periodSeconds": 5},
        start_log=(
            "INFO starting calibration-service {version} on :{port}",
            "INFO loaded 412 option surfaces for Heston calibration",
        ),
    ),
    Workload(
        name="data-ingestion",
        kind="Deployment",
        replicas=1,
        tag="1.3.1",
        port=8083,
        requests={"cpu": "200m", "memory": "256Mi"},
        limits={"cpu": "500m", "memory": "512Mi"},
        usage=(150, 300),
        start_log=(
            "INFO starting data-ingestion {version} on :{port}",
            "INFO subscribed to market-data feed (1180 symbols)",
        ),
    ),
    Workload(
        name="timescaledb",
        kind="StatefulSet",
        replicas=1,
        tag="2.14.2-pg16",
        port=5432,
        requests={"cpu": "500m", "memory": "2Gi"},
        limits={"cpu": "2", "memory": "4Gi"},
        usage=(300, 1800),
        readiness={"tcpSocket": {"port": 5432}, "periodSeconds": 5},
        headless=True,
        start_log=(
            "LOG:  starting PostgreSQL 16.2 with TimescaleDB {version}",
            'LOG:  listening on IPv4 address "0.0.0.0", port {port}',
            "LOG:  database system is ready to accept connections",
        ),
    ),
    Workload(
        name="redis",
        kind="StatefulSet",
        replicas=1,
        tag="7.2.4",
        port=6379,
        requests={"cpu": "100m", "memory": "256Mi"},
        limits={"cpu": "500m", "memory": "512Mi"},
        usage=(30, 90),
        readiness={"tcpSocket": {"port": 6379}, "periodSeconds": 5},
        start_log=(
            "INFO Redis version={version}, bits=64, started",
            "INFO Ready to accept connections tcp",
        ),
    ),
)
BY_NAME = {w.name: w for w in WORKLOADS}
DEFAULT_USAGE = (50, 64)


def probe_table(config: LabConfig) -> dict[str, Probe]:
    """Container name -> the real process that decides its readiness. Containers without an
    entry are ready once started."""
    host = config.host
    return {
        "timescaledb": tcp(host, config.ports["postgres"]),
        "redis": tcp(host, config.ports["redis"]),
        "api-service": http(f"http://{host}:{config.ports['api']}/livez"),
        "execution-service": http(f"http://{host}:{config.ports['execution']}/livez"),
        "calibration-service": http(f"http://{host}:{config.ports['calibration_service']}/livez"),
    }


def start_log(container: str, image: str) -> list[str]:
    """What a container prints when it starts (the emulator writes it into the pod's log)."""
    version = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    workload = BY_NAME.get(container)
    if workload is None:
        return [f"INFO starting {container} {version}"]
    return [line.format(version=version, port=workload.port) for line in workload.start_log]


def usage(container: str) -> tuple[int, int]:
    w = BY_NAME.get(container)
    return w.usage if w else DEFAULT_USAGE


# -- objects ------------------------------------------------------------------------------


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]


def node(
    index: int,
    name: str,
    shape: tuple[str, int, int] = (NODE_TYPE, int(NODE_CPU), 16),
) -> Obj:
    """Node `index` of the cluster, a machine of `shape` (instance type, CPUs, GiB)."""
    ip = f"10.0.{index // 240}.{11 + index % 240}"
    kind, cpus, gib = shape
    cpu, memory = str(cpus), f"{gib}Gi"
    zone = ZONES[index % len(ZONES)]
    return {
        "metadata": _meta(
            name,
            labels={
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": kind,
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": zone,
            },
            annotations={
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        ),
        "spec": {
            "podCIDR": f"10.244.{index + 1}.0/24",
            "podCIDRs": [f"10.244.{index + 1}.0/24"],
            "providerID": f"aws:///{zone}/i-0{index + 1}a4c9e7f3b2d18{index}",
        },
        "status": {
            "capacity": {
                "cpu": cpu,
                "memory": memory,
                "pods": NODE_PODS,
                "ephemeral-storage": "104845292Ki",
                "hugepages-2Mi": "0",
            },
            "allocatable": {
                "cpu": cpu,
                "memory": memory,
                "pods": NODE_PODS,
                "ephemeral-storage": "96625420948",
                "hugepages-2Mi": "0",
            },
            "conditions": [],  # the controller's node lifecycle fills them in
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": f"6f0c2d4e-1b7a-4c3e-9d2f-0a5b8c7e{index:04d}",
                "containerRuntimeVersion": "containerd://1.7.22",
                "kernelVersion": "6.1.112-124.190.amzn2023.x86_64",
                "kubeProxyVersion": KUBELET_VERSION,
                "kubeletVersion": KUBELET_VERSION,
                "machineID": f"ec2{index}5b0a7f3c9d41e28b6a0f7c3d9e1{index}",
                "operatingSystem": "linux",
                "osImage": "Amazon Linux 2023.6.20241031",
                "systemUUID": f"ec2{index}5b0a-7f3c-9d41-e28b-6a0f7c3d9e1{index}",
            },
        },
    }


def _container(w: Workload, image: str) -> dict[str, Any]:
    c: dict[str, Any] = {
        "name": w.name,
        "image": image,
        "ports": [{"name": "http" if w.kind == "Deployment" else w.name, "containerPort": w.port}],
        "resources": {"requests": dict(w.requests), "limits": dict(w.limits)},
    }
    if w.env:
        c["env"] = [{"name": k, "value": v} for k, v in w.env.items()]
    if w.readiness:
        c["readinessProbe"] = copy.deepcopy(w.readiness)
    return c


def _template(w: Workload, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": w.name}},
        "spec": {"containers": [_container(w, image)]},
    }


def workload(w: Workload, namespace: str) -> Obj:
    spec: dict[str, Any] = {
        "replicas": w.replicas,
        "selector": {"matchLabels": {"app": w.name}},
        "template": _template(w, w.image),
    }
    meta = _meta(w.name, namespace, labels={"app": w.name})
    if w.kind == "StatefulSet":
        spec["serviceName"] = w.name
    if w.name == "api-service":
        meta["annotations"] = {"kubernetes.io/change-cause": API_HISTORY[-1][1]}
    return {"metadata": meta, "spec": spec}


def service(w: Workload, namespace: str) -> Obj:
    port_name = "http" if w.kind == "Deployment" else w.name
    spec: dict[str, Any] = {
        "selector": {"app": w.name},
        "ports": [
            {
                "name": port_name,
                "port": w.service_port or w.port,
                "targetPort": port_name if w.kind == "Deployment" else w.port,
                "protocol": "TCP",
            }
        ],
    }
    if w.headless:
        spec["clusterIP"] = "None"
    return {"metadata": _meta(w.name, namespace, labels={"app": w.name}), "spec": spec}


def ingress(namespace: str) -> Obj:
    return {
        "metadata": _meta(
            "trading-api",
            namespace,
            labels={"app": "api-service"},
            annotations={"nginx.ingress.kubernetes.io/proxy-read-timeout": "30"},
        ),
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "api.trading.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "api-service", "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
    }


def _old_replicaset(deployment: Obj, tag: str, cause: str, revision: int) -> Obj:
    w = BY_NAME[deployment["metadata"]["name"]]
    image = f"{REGISTRY}/{w.name}:{tag}"
    template = defaults.apply_defaults("ReplicaSet", {"spec": {"template": _template(w, image)}})
    template = template["spec"]["template"]
    pod_hash = template_hash(template)
    template["metadata"]["labels"]["pod-template-hash"] = pod_hash
    name = deployment["metadata"]["name"]
    return {
        "metadata": _meta(
            f"{name}-{pod_hash}",
            deployment["metadata"]["namespace"],
            labels={"app": name, "pod-template-hash": pod_hash},
            annotations={
                "deployment.kubernetes.io/desired-replicas": str(w.replicas),
                "deployment.kubernetes.io/max-replicas": str(w.replicas + 1),
                "deployment.kubernetes.io/revision": str(revision),
                "kubernetes.io/change-cause": cause,
            },
            ownerReferences=[owner_ref(deployment)],
        ),
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name, "pod-template-hash": pod_hash}},
            "template": template,
        },
        "status": {"replicas": 0, "observedGeneration": 1},
    }


def populate(store: Store, config: LabConfig, now: float) -> None:
    """Write the cluster's starting objects; pods come from the controller's first pass."""
    ns = config.namespace

    def put(kind_key: str, obj: Obj, age: float) -> Obj:
        res = resource(kind_key)
        return store.create(res, defaults.apply_defaults(res.kind, obj), timestamp=now - age)

    for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
        put("namespaces", {"metadata": _meta(name)}, CLUSTER_AGE)
    put("namespaces", {"metadata": _meta(ns)}, PLATFORM_AGE)
    size = config.size
    shape = size.shape()
    for i, name in enumerate(node_names(size.nodes)):
        obj = put("nodes", node(i, name, shape), CLUSTER_AGE)
        lease = {
            "metadata": _meta(
                name, "kube-node-lease", ownerReferences=[owner_ref(obj, controller=False)]
            ),
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": None},
        }
        put("leases.coordination.k8s.io", lease, CLUSTER_AGE)
    put(
        "services",
        {
            "metadata": _meta(
                "kubernetes", "default", labels={"component": "apiserver", "provider": "kubernetes"}
            ),
            "spec": {
                "clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
            },
        },
        CLUSTER_AGE,
    )
    for w in WORKLOADS:
        if w.name == "api-service":
            w = dataclasses.replace(w, replicas=size.api_replicas)
        key = "deployments.apps" if w.kind == "Deployment" else "statefulsets.apps"
        obj = put(key, workload(w, ns), PLATFORM_AGE)
        if w.name == "api-service":
            for revision, (tag, cause) in enumerate(API_HISTORY[:-1], start=1):
                put("replicasets.apps", _old_replicaset(obj, tag, cause, revision), REVISION_1_AGE)
        put("services", service(w, ns), PLATFORM_AGE)
    put("ingresses.networking.k8s.io", ingress(ns), PLATFORM_AGE)
