"""metrics.k8s.io PodMetrics and NodeMetrics, as metrics-server serves them to `kubectl top`.
Stable per-workload figures (cluster.py), except api-service's while the lab's api process
runs: its /proc CPU and RSS split across the pods. OOM-killed containers sit near their
limit; nodes whose kubelet is down, and their pods, have no metrics. The latency drill's
switches pin a workload at its CPU limit or make its memory climb (`_latency_faults`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from irlib.k8s import quantity
from irlib.lab.kube import cluster
from irlib.lab.kube.context import NODES, PODS, Context
from irlib.lab.kube.meta import Obj, rfc3339
from irlib.lab.kube.selectors import field_matcher, label_matcher

API_CONTAINER = "api-service"
SYSTEM_CPU = 180  # millicores: kubelet, containerd, kube-proxy, CNI per node
SYSTEM_MEMORY = 1100 * quantity.MI


def _jitter(key: str, spread: float = 0.08) -> float:
    """A stable factor in [1-spread, 1+spread] so replicas do not show identical figures."""
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return 1 - spread + 2 * spread * h


class ProcessSampler:
    """CPU rate and RSS of one process from /proc, for api-service's real figures."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self._last: tuple[int, float, float] | None = None  # (pid, cpu seconds, wall time)
        self.millicores: float | None = None
        self.rss: float | None = None

    def sample(self, now: float) -> None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ValueError, IndexError, ProcessLookupError, PermissionError):
            self._last, self.millicores, self.rss = None, None, None
            return
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss = float(line.split()[1]) * 1024
        if self._last and self._last[0] == pid and now - self._last[2] >= 1.0:
            self.millicores = max((cpu - self._last[1]) / (now - self._last[2]) * 1000, 1.0)
            self._last = (pid, cpu, now)
        elif not self._last or self._last[0] != pid:
            self._last = (pid, cpu, now)


class Metrics:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.api = ProcessSampler(ctx.config.run_dir / "api.pid")
        self._peers: tuple[tuple[int, str | None], int] = ((-1, None), 1)

    def sample(self) -> None:
        self.api.sample(self.ctx.clock())

    def _running(self, pod: Obj) -> list[str]:
        """Containers with figures: running, or restarting (metrics-server keeps reporting
        the last scrape of a crash-looping container)."""
        return [
            s["name"]
            for s in pod.get("status", {}).get("containerStatuses") or []
            if "running" in (s.get("state") or {}) or s.get("restartCount")
        ]

    def _api_peers(self, namespace: str | None) -> int:
        """How many pods share the api process's figures; counted once per store version
        (per pod it made `kubectl top pods` of 2,000 pods quadratic: 7.6 s)."""
        key = (self.ctx.store.rv, namespace)
        if self._peers[0] != key:
            count = sum(
                1 for p in self.ctx.store.all(PODS, namespace) if API_CONTAINER in self._running(p)
            )
            self._peers = (key, count or 1)
        return self._peers[1]

    def container_usage(self, pod: Obj, container: str) -> tuple[float, float]:
        """(millicores, bytes) of one running container."""
        name = pod["metadata"]["name"]
        spec: Obj = next((c for c in pod["spec"]["containers"] if c["name"] == container), {})
        fault = self.ctx.fault_for(pod, spec) if spec else None
        cpu, mem_mi = cluster.usage(container)
        cpu_m, mem = cpu * _jitter(name + "cpu"), mem_mi * quantity.MI * _jitter(name + "mem")
        if container == API_CONTAINER and self.api.rss is not None:
            peers = self._api_peers(pod["metadata"].get("namespace"))
            mem = self.api.rss / peers
            if self.api.millicores is not None:
                cpu_m = max(self.api.millicores / peers, 1.0)
        cpu_m, mem = self._latency_faults(pod, spec, cpu_m, mem)
        if fault and fault["reason"] == "OOMKilled":
            limit = quantity.parse(fault.get("limit") or "1Gi")
            mem = limit * (0.95 + 0.04 * _jitter(name + "oom", 1.0) / 2)
            cpu_m *= 2.5
        elif fault:  # dies during start-up: it never gets far
            cpu_m, mem = 2.0, 14 * quantity.MI * _jitter(name + "mem")
        return cpu_m, mem

    def _latency_faults(self, pod: Obj, spec: Obj, cpu_m: float, mem: float) -> tuple[float, float]:
        """control.json's `cpu_saturation` ({deployment: true}) pins a workload's containers at
        their CPU limit; `memory_leak` ({deployment: start time}) makes their memory climb
        from its usual level toward the limit: 55% at once, 85% after 5 s, then 97%."""
        workload = self.ctx.workload_of(pod)
        name = pod["metadata"]["name"]
        limits = (spec.get("resources") or {}).get("limits") or {}
        if workload in (self.ctx.control.get("cpu_saturation") or {}):
            cpu_m = quantity.millicores(limits.get("cpu") or "1") * (
                0.97 + 0.03 * _jitter(name + "sat", 1.0) / 2
            )
        since = (self.ctx.control.get("memory_leak") or {}).get(workload) if workload else None
        if since is not None:
            limit = quantity.parse(limits.get("memory") or "1Gi")
            grown = min(0.97, 0.55 + 0.06 * max(0.0, self.ctx.clock() - float(since)))
            mem = max(mem, limit * grown * _jitter(name + "leak", 0.01))
        return cpu_m, mem

    def pod_metrics(self, pod: Obj) -> Obj | None:
        node = pod["spec"].get("nodeName")
        if not node or node in self.ctx.not_ready_nodes():
            return None
        running = self._running(pod)
        if not running:
            return None
        containers = []
        for name in running:
            cpu_m, mem = self.container_usage(pod, name)
            containers.append(
                {
                    "name": name,
                    "usage": {"cpu": quantity.nanocores(cpu_m), "memory": quantity.kibibytes(mem)},
                }
            )
        now = self.ctx.clock()
        meta = pod["metadata"]
        return {
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "creationTimestamp": rfc3339(now),
                "labels": dict(meta.get("labels") or {}),
            },
            "timestamp": rfc3339(now - 7),
            "window": "15.011s",
            "containers": containers,
        }

    def node_metrics(self, node: Obj) -> Obj | None:
        name = node["metadata"]["name"]
        if name in self.ctx.not_ready_nodes():
            return None
        cpu_m, mem = SYSTEM_CPU * _jitter(name + "cpu", 0.2), SYSTEM_MEMORY * _jitter(name)
        for pod in self.ctx.store.all(PODS):
            if pod["spec"].get("nodeName") == name:
                for c in self._running(pod):
                    pc, pm = self.container_usage(pod, c)
                    cpu_m += pc
                    mem += pm
        now = self.ctx.clock()
        return {
            "kind": "NodeMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {
                "name": name,
                "creationTimestamp": rfc3339(now),
                "labels": dict(node["metadata"].get("labels") or {}),
            },
            "timestamp": rfc3339(now - 9),
            "window": "20.04s",
            "usage": {"cpu": quantity.nanocores(cpu_m), "memory": quantity.kibibytes(mem)},
        }

    def list(
        self, kind: str, namespace: str | None, labels: str | None, fields: str | None
    ) -> list[Obj]:
        match_labels, match_fields = label_matcher(labels), field_matcher(fields)
        out = []
        if kind == "pods":
            for pod in self.ctx.store.all(PODS, namespace):
                m = self.pod_metrics(pod)
                if m and match_labels(m["metadata"]["labels"]) and match_fields(m):
                    out.append(m)
        else:
            for node in self.ctx.store.all(NODES):
                m = self.node_metrics(node)
                if m and match_labels(m["metadata"]["labels"]) and match_fields(m):
                    out.append(m)
        return sorted(
            out, key=lambda m: (m["metadata"].get("namespace", ""), m["metadata"]["name"])
        )
