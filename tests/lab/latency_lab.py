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


# -- EVIDENCE of tests/lab/test_lab.py: each fault where production would show it ----------------


def evidence_slow_query(lab: LabHandle) -> None:
    assert "idx_orders_symbol_created_at" not in psql(lab, r"\d orders")
    # the seed's symptom: the API's p99 over its threshold (5 s), from the dashboard's polls
    # piling up behind 2M-row scans
    wait_until(
        "Prometheus p99 of /v1/orders above the threshold",
        lambda: (p99(lab, "10s", "/v1/orders") or 0) > THRESHOLD_S,
    )


def evidence_lock_contention(lab: LabHandle) -> None:
    rows = psql(
        lab,
        "SELECT b.application_name, b.state FROM pg_stat_activity w "
        "JOIN pg_stat_activity b ON b.pid = ANY(pg_blocking_pids(w.pid)) LIMIT 1",
    )
    assert rows.strip() == "nightly-report|idle in transaction"


def evidence_connection_exhaustion(lab: LabHandle) -> None:
    pool = wait_until("the api's pool exhausted", lambda: (p := api_pool(lab))["waiting"] and p)
    assert pool["in_use"] >= pool["max_size"]
    idle = psql(
        lab,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'api-service' "
        "AND state = 'idle in transaction'",
    )
    assert int(idle) >= 10


def evidence_redis_memory_pressure(lab: LabHandle) -> None:
    info = redis_info(lab)
    assert int(info["maxmemory"]) > 0 and int(info["evicted_keys"]) > 0
    assert int(info["used_memory"]) >= 0.9 * int(info["maxmemory"])


def evidence_cpu_saturation(lab: LabHandle) -> None:
    assert all(cpu >= 900 for cpu, _ in top_api_pods(lab))
    wait_until("Prometheus p99 over 5 s", lambda: (p99(lab, "10s") or 0) > THRESHOLD_S)


def evidence_memory_leak(lab: LabHandle) -> None:
    wait_until("api pods at 85% of 1Gi", lambda: all(m >= 870 for _, m in top_api_pods(lab)))


def results_text(run_dir: Any) -> str:
    """Every output of the executed notebook, as text."""
    nb = json.loads((run_dir / "notebook.ipynb").read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts.append("".join(data.get("text/plain", out.get("text", ""))))
    return "\n".join(parts)
