"""The drill lab's Kubernetes API: an emulated cluster that kubectl and the Python client use.

`python -m irlib.lab.kube STATE_DIR` serves it on the lab's `kubernetes` port; the lab writes
a kubeconfig for it with `write_kubeconfig` and waits for it with `wait_ready`.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import yaml

from irlib.errors import LabError
from irlib.lab.config import LabConfig

CLUSTER = CONTEXT = USER = "irlib-lab"

__all__ = ["kubeconfig_dict", "wait_ready", "write_kubeconfig"]


def kubeconfig_dict(config: LabConfig) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER, "cluster": {"server": config.url("kubernetes")}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CLUSTER, "user": USER, "namespace": config.namespace},
            }
        ],
        "current-context": CONTEXT,
        "users": [{"name": USER, "user": {}}],
        "preferences": {},
    }


def write_kubeconfig(config: LabConfig) -> Path:
    """Write `config.kubeconfig` (mode 600, as kubectl likes it) and return its path."""
    path = config.kubeconfig
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_dict(config), sort_keys=False))
    path.chmod(0o600)
    return path


def wait_ready(config: LabConfig, timeout: float) -> None:
    """Poll `/readyz` until the API answers; LabError after `timeout` seconds."""
    url = config.url("kubernetes") + "/readyz"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=1.0)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.1)
    raise LabError(f"the lab's Kubernetes API at {url} was not ready after {timeout:.0f} s: {last}")
