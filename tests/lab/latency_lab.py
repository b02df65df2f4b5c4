"""What the P2 latency tests share: Prometheus, psql and redis-cli against the session's lab,
waiting for what they should show instead of sleeping."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx

from irlib import prom
from irlib.lab.config import LabConfig
from irlib.prom.checks import quantile_query
from tests.helpers import LabHandle, require_binary, wait_until

THRESHOLD_S = 5.0


def config(lab: LabHandle) -> LabConfig:
    return LabConfig.load(lab.state_dir)


def p99(lab: LabHandle, window: str = "10s", route: str | None = None) -> float | None:
    """The API's p99 over `window` as Prometheus answers now (None: no traffic measured)."""
    by = "route" if route else ""
    rows = prom.query(
        config(lab).url("prometheus"),
        quantile_query("http_request_duration_seconds", 0.99, window, "api-service", by=by),
        timeout_s=5,
    )
    values = [v for labels, v in rows if route is None or labels.get("route") == route]
    return values[0] if values else None


def wait_calm(
    lab: LabHandle, window: str = "10s", below_s: float = 1.0, timeout: float = 90
) -> None:
    """Wait until the slow requests of an earlier fault have left Prometheus's window."""
    wait_until(
        f"API p99 over {window} under {below_s} s",
        lambda: (v := p99(lab, window)) is not None and v < below_s,
        timeout=timeout,
    )


def psql(lab: LabHandle, command: str) -> str:
    """The real psql binary against the lab's database: a query's bare values, or what a
    meta-command like `\\d orders` prints in full."""
    binary = require_binary("psql", "postgresql-client")
    bare = [] if command.startswith("\\") else ["-A", "-t"]
    result = subprocess.run(
        [binary, config(lab).postgres_dsn, "-X", *bare, "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def redis_info(lab: LabHandle) -> dict[str, str]:
    cli = require_binary("redis-cli", "redis-tools")
    cfg = config(lab)
    out = subprocess.run(
        [cli, "-h", cfg.host, "-p", str(cfg.ports["redis"]), "INFO"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def top_api_pods(lab: LabHandle) -> list[tuple[int, int]]:
    """(millicores, MiB) of each api-service pod, as `kubectl top pods` prints them."""
    out = lab.kubectl("top", "pods", "-n", "trading", "-l", "app=api-service", "--no-headers")
    rows = []
    for line in out.stdout.splitlines():
        _, cpu, mem = line.split()[:3]
        rows.append((int(cpu.rstrip("m")), int(mem.rstrip("Mi"))))
    return rows


def api_pool(lab: LabHandle) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(config(lab).url("api") + "/v1/admin/pool", timeout=5).json()
    return dict(body["pool"])


def results_text(run_dir: Any) -> str:
    """Every output of the executed notebook, as text."""
    nb = json.loads((run_dir / "notebook.ipynb").read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts.append("".join(data.get("text/plain", out.get("text", ""))))
    return "\n".join(parts)
