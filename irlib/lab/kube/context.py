"""What the emulator's control loops share: the store, the clock, the fault switches now in
force, the probe results and the simulated containers' runtime state.

Built by controller.py and handed to the loops in workloads.py, kubelet.py and metrics.py.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from irlib.lab.config import Control, LabConfig
from irlib.lab.kube.events import Recorder
from irlib.lab.kube.loop_health import LoopHealth
from irlib.lab.kube.meta import Obj, controller_of
from irlib.lab.kube.resources import resource
from irlib.lab.kube.store import Store

PODS = resource("pods")
NODES = resource("nodes")
SERVICES = resource("services")
ENDPOINTS = resource("endpoints")
ENDPOINTSLICES = resource("endpointslices.discovery.k8s.io")
DEPLOYMENTS = resource("deployments.apps")
REPLICASETS = resource("replicasets.apps")
STATEFULSETS = resource("statefulsets.apps")


@dataclass
class ContainerRun:
    """One container of a pod as the simulated kubelet runs it."""

    name: str
    image: str
    phase: str = "creating"  # creating | running | backoff
    since: float = 0.0  # when the phase began
    started_at: float = 0.0  # when the current (or last) container instance started
    container_id: str = ""
    restarts: int = 0
    last_terminated: Obj | None = None
    crash_from: float | None = None  # when a fault first applied to this instance


@dataclass
class PodRun:
    uid: str
    containers: dict[str, ContainerRun] = field(default_factory=dict)
    started: float = 0.0


@dataclass
class Context:
    store: Store
    config: LabConfig
    recorder: Recorder
    clock: Callable[[], float]
    health: LoopHealth
    control: Control = field(default_factory=lambda: Control())
    probe_results: dict[str, tuple[bool, str]] = field(default_factory=dict)
    runs: dict[str, PodRun] = field(default_factory=dict)
    # resource key -> (store version, controller uid -> objects): workloads.owned's index
    owner_index: dict[str, tuple[int, dict[str, list[Obj]]]] = field(default_factory=dict)
    # pod uid -> (resourceVersion, inputs) of the status the kubelet last wrote (kubelet.py)
    status_inputs: dict[str, tuple[str, tuple[object, ...]]] = field(default_factory=dict)
    bootstrapping: bool = False

    def not_ready_nodes(self) -> set[str]:
        return set(self.control.get("not_ready_nodes") or [])

    def workload_of(self, pod: Obj) -> str | None:
        """The Deployment (through its ReplicaSet) or StatefulSet that owns a pod."""
        ref = controller_of(pod)
        if ref is None:
            return None
        if ref["kind"] == "StatefulSet":
            return str(ref["name"])
        if ref["kind"] == "ReplicaSet":
            rs = self.store.get(REPLICASETS, pod["metadata"].get("namespace"), ref["name"])
            owner = controller_of(rs) if rs else None
            return str(owner["name"]) if owner and owner["kind"] == "Deployment" else None
        return None

    def fault_for(self, pod: Obj, container: Obj) -> Obj | None:
        """The crash a container suffers under the current switches: reason, exit code, log."""
        crashing = (self.control.get("crashing_images") or {}).get(str(container.get("image")))
        if crashing is not None:
            return {
                "reason": crashing.get("reason", "Error"),
                "exit_code": int(crashing.get("exit_code", 1)),
                "log": list(crashing.get("log") or []),
            }
        oom = self.control.get("oom_killed") or {}
        workload = self.workload_of(pod)
        if workload in oom:
            return {"reason": "OOMKilled", "exit_code": 137, "log": None, "limit": oom[workload]}
        return None
