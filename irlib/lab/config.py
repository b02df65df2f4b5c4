"""The lab's shared configuration: ports, paths and the fault control file.

Every lab process (servers, platform apps, the Kubernetes API) is started with the path of
`lab.json` and reads its addresses from it; faults are switched through `control.json`,
which processes re-read while they run. Nothing here talks to a server.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from irlib.io import write_json_atomic

HOST = "127.0.0.1"
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
        return f"http://{self.host}:{self.ports[part]}"

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
    def control_file(self) -> Path:
        return Path(self.state_dir) / "control.json"

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


def read_control(config: LabConfig) -> dict[str, Any]:
    """The fault switches now in force; `{}` when the lab is healthy.

    Keys (each optional):
      not_ready_nodes: [node names] whose kubelet stopped posting status
      crashing_images: {image: {"reason", "exit_code", "log": [lines]}}: crash on start
      oom_killed: {deployment name: memory limit string} containers killed for memory
      calibration_paused, calibration_config, calibration_batch, ingestion_stopped,
      missing_surfaces: the calibration faults' switches (faults_calibration.py)
    """
    try:
        return json.loads(config.control_file.read_text())
    except FileNotFoundError:
        return {}


def write_control(config: LabConfig, control: dict[str, Any]) -> None:
    """Switch faults: a process re-reading control.json sees the old switches or the new."""
    config.control_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config.control_file, control, sort_keys=True)
