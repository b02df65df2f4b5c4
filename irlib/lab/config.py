"""The lab's shared configuration: ports, paths and the fault control file.

Every lab process (servers, platform apps, the Kubernetes API) is started with the path of
`lab.json` and reads its addresses from it; faults are switched through `control.json`,
which processes re-read while they run. Nothing here talks to a server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict, cast

from irlib.io import write_json_atomic
from irlib.lab.size import LabSize

HOST = "127.0.0.1"
# the broker's bearer token: the broker checks it, the execution-service and the runbooks send it
BROKER_TOKEN_ENV = "IRLIB_BROKER_TOKEN"
NAMESPACE = "trading"
PARTS = (
    "postgres",
    "redis",
    "prometheus",
    "api",
    "broker",
    "market_data",
    "kubernetes",
    "execution",
    "calibration_service",
    "alertmanager",
    "serve",
)


@dataclass
class LabConfig:
    """Where every part of one lab lives; written once by `irlib lab up`."""

    state_dir: str
    ports: dict[str, int]
    pg_data_dir: str
    namespace: str = NAMESPACE
    host: str = HOST
    database: str = "trading"
    extra: dict[str, Any] = field(default_factory=dict)
    # its size (irlib.lab.size.LabSize): the Kubernetes API builds the cluster at it
    nodes: int = 3
    api_replicas: int = 3
    events: int = 0

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "lab.json"

    @property
    def postgres_dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.ports['postgres']}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.ports['redis']}/0"

    def url(self, part: str) -> str:
        # the Kubernetes API speaks TLS with the lab's CA, as a cluster's does (kube/pki.py)
        scheme = "https" if part == "kubernetes" else "http"
        return f"{scheme}://{self.host}:{self.ports[part]}"

    @property
    def size(self) -> LabSize:
        return LabSize(self.nodes, self.api_replicas, self.events)

    @property
    def progress_file(self) -> Path:
        """One line: what the Kubernetes API builds while it starts (a big lab takes time)."""
        return Path(self.state_dir) / "kube-progress.txt"

    @property
    def pods_dir(self) -> Path:
        """Per-pod log files: `<pod>.log` (current container) and `<pod>.previous.log`."""
        return Path(self.state_dir) / "pods"

    @property
    def logs_dir(self) -> Path:
        """Stdout/stderr of each lab process, `<part>.log`."""
        return Path(self.state_dir) / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files, `<part>.pid`."""
        return Path(self.state_dir) / "run"

    @property
    def controller_status_file(self) -> Path:
        """The Kubernetes API's controller: its failing loops, written by that process."""
        return Path(self.state_dir) / "kube-controller.json"

    @property
    def control_file(self) -> Path:
        return Path(self.state_dir) / "control.json"

    @property
    def pki_dir(self) -> Path:
        """The Kubernetes API's CA, server certificate, admin token and token signing key."""
        return Path(self.state_dir) / "pki"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state_dir) / "kubeconfig"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, asdict(self), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabConfig:
        path = Path(path)
        if path.is_dir():
            path = path / "lab.json"
        return cls(**json.loads(path.read_text()))


class Crash(TypedDict):
    """How a container of a crashing image dies on start."""

    reason: str  # the terminated state's reason, e.g. "Error"
    exit_code: int
    log: list[str]  # what it prints before it dies (`kubectl logs --previous`)


class Control(TypedDict, total=False):
    """control.json: the fault switches now in force, `{}` when the lab is healthy. Each key is
    set by the fault(s) named and read by the lab process(es) named; mypy checks every key.
    """

    # irlib.lab.faults: every active fault in injection order, and the parts they keep stopped
    faults: list[str]
    stopped_parts: list[str]  # `irlib lab up` leaves these down (irlib.lab.lab)
    # faults_unavailable -> the lab's Kubernetes (kube/context.py, kube/metrics.py)
    crashing_images: dict[str, Crash]  # image -> its crash (bad-deploy, execution crash)
    bad_deploy: dict[str, str]  # {"previous_image"}: what clearing rolls back to
    oom_killed: dict[str, str]  # deployment -> the memory limit its containers exceed
    not_ready_nodes: list[str]  # nodes whose kubelet stopped posting status
    pods_pending: dict[str, dict[str, str]]  # {"previous_requests"}: restored on clear
    # faults_execution -> apps/broker.py, apps/execution.py
    broker: dict[str, Any]  # {"auth_revoked": bool, "reject_reason": str, "latency_s": float}
    position_mismatch: dict[str, Any]  # {"account", "deltas": {symbol: qty}}
    missing_reports: dict[str, list[int]]  # {"orders": [order ids]} whose reports never come
    # faults_latency -> pg_holder.py, apps/fault_switches.py, kube/metrics.py
    lock_contention: dict[str, str]  # {"table"} a held transaction locks
    connection_leak: dict[str, float]  # {"since": epoch s}: the api-service leaks connections
    redis_memory_pressure: dict[str, str]  # {"maxmemory", "policy"} to restore on clear
    cpu_saturation: dict[str, Any]  # deployment -> the CPU its pods burn
    memory_leak: dict[str, Any]  # deployment -> epoch s its pods started leaking
    dashboard_paused: bool  # while slow-query's clear rebuilds the index -> apps/loadgen.py
    # faults_calibration -> apps/calibration_service.py, apps/market_data.py
    calibration_paused: bool  # the scheduled calibration stopped
    stale_calibration: dict[str, list[int]]  # {"ids"}: calibrations aged into the past
    calibration_config: dict[str, Any]  # optimiser settings that make every fit diverge
    calibration_batch: dict[str, float]  # {"surfaces", "per_surface_mib"}: the OOM batch
    ingestion_stopped: bool  # the market-data feed stops writing ticks
    missing_surfaces: list[str]  # symbols whose option surface is never published


CONTROL_KEYS = frozenset(Control.__annotations__)


def read_control(config: LabConfig) -> Control:
    """The fault switches now in force; `{}` when the lab is healthy (or never started)."""
    try:
        return cast(Control, json.loads(config.control_file.read_text()))
    except FileNotFoundError:
        return {}


def write_control(config: LabConfig, control: Control) -> None:
    """Switch faults: a process re-reading control.json sees the old switches or the new."""
    config.control_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config.control_file, control, sort_keys=True)


def update_control(config: LabConfig, change: Callable[[Control], object]) -> None:
    """Read control.json, apply `change` to it, write it back (one process writes: the CLI)."""
    control = read_control(config)
    change(control)
    write_control(config, control)
