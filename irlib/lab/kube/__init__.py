"""The drill lab's Kubernetes API: an emulated cluster that kubectl and the Python client use.

`python -m irlib.lab.kube STATE_DIR` serves it over TLS on the lab's `kubernetes` port; the
lab makes its credentials (pki.py) and an admin kubeconfig for it with `write_kubeconfig`
(the CA and the admin's bearer token inside), waits for it with `wait_ready`, and asks
`controller_problems` whether its controller's loops are failing.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from irlib.errors import LabError
from irlib.lab.config import LabConfig
from irlib.lab.kube import pki
from irlib.lab.kube.access import admin_request, ssl_context

CLUSTER = CONTEXT = USER = "irlib-lab"

__all__ = [
    "admin_request",
    "controller_problems",
    "kubeconfig_dict",
    "wait_ready",
    "write_kubeconfig",
]
STALE_AFTER = 60.0  # no controller pass for this long is itself a failure (a pass takes < 1 s)


def ca_data(config: LabConfig) -> str:
    """The lab CA's PEM, base64 as a kubeconfig's `certificate-authority-data` holds it."""
    return base64.b64encode(pki.path(config, pki.CA_CERT).read_bytes()).decode()


def kubeconfig_dict(config: LabConfig) -> dict[str, object]:
    """The admin kubeconfig: the lab's CA and the admin user's token (group system:masters)."""
    cluster = {"server": config.url("kubernetes"), "certificate-authority-data": ca_data(config)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CLUSTER, "user": USER, "namespace": config.namespace},
            }
        ],
        "current-context": CONTEXT,
        "users": [{"name": USER, "user": {"token": pki.read(config, pki.ADMIN_TOKEN)}}],
        "preferences": {},
    }


def write_kubeconfig(config: LabConfig) -> Path:
    """Make the API's credentials if missing, write `config.kubeconfig` (mode 600: it holds
    the admin token) and return its path."""
    pki.ensure(config)
    path = config.kubeconfig
    path.parent.mkdir(parents=True, exist_ok=True)
    pki.write_private(path, yaml.safe_dump(kubeconfig_dict(config), sort_keys=False).encode())
    return path


def wait_ready(config: LabConfig, timeout: float) -> None:
    """Poll `/readyz` (TLS verified with the lab's CA) until the API answers; LabError after
    `timeout` seconds."""
    url = config.url("kubernetes") + "/readyz"
    deadline = time.monotonic() + timeout
    last = "no answer"
    verify = ssl_context(config)
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=1.0, verify=verify)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.1)
    raise LabError(f"the lab's Kubernetes API at {url} was not ready after {timeout:.0f} s: {last}")


def controller_problems(config: LabConfig, pid: int | None) -> list[dict[str, Any]]:
    """The controller loops of API process `pid` that fail now: [{loop, object, error,
    since, count}]. Read from the status file that process writes (a file, not an endpoint:
    it reaches the lab without the API's credentials, and the pid tells a dead process's
    file apart); a process that wrote none reports nothing."""
    try:
        report = json.loads(config.controller_status_file.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(report, dict) or report.get("pid") != pid:
        return []
    problems = [f for f in report.get("failing") or [] if isinstance(f, dict)]
    last = report.get("last_pass")
    if isinstance(last, int | float) and time.time() - last > STALE_AFTER:
        problems.append(
            {
                "loop": "controller",
                "object": "-",
                "error": f"no reconcile pass for {time.time() - last:.0f} s",
                "since": last,
                "count": 1,
            }
        )
    return problems
