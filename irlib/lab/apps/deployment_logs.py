"""Log lines of a lab process, written into the log files of the pods that play it.

The emulator keeps `<pods_dir>/<pod>.log` for every current pod (and removes it with the
pod), so the pods of a deployment are the files named `<deployment>-*.log`; `kubectl logs
-l app=<deployment>` then shows what the process wrote.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from irlib.lab.apps.ingress import PodLogs


class DeploymentLogs:
    def __init__(self, pods_dir: Path, deployment: str) -> None:
        self.logs = PodLogs(pods_dir)
        self.deployment = deployment
        self._turn = itertools.count()

    def pods(self) -> list[str]:
        """The deployment's current pods (ReplicaSet pods are `<deployment>-<hash>-<id>`)."""
        names = (
            f.name[: -len(".log")]
            for f in self.logs.dir.glob(f"{self.deployment}-*-*.log")
            if not f.name.endswith(".previous.log")
        )
        return sorted(n for n in names if n.count("-") == self.deployment.count("-") + 2)

    def write(self, level: str, message: str, *, every_pod: bool = False) -> None:
        """One line in one pod's log (round robin, as a Service spreads work), or in all."""
        pods = self.pods()
        if not pods:
            return
        chosen = pods if every_pod else [pods[next(self._turn) % len(pods)]]
        for pod in chosen:
            self.logs.write(pod, level, message)

    def contains(self, pod: str, text: str) -> bool:
        try:
            return text in (self.logs.dir / f"{pod}.log").read_text(errors="replace")
        except FileNotFoundError:
            return False
