"""The drill lab through its command line, checked with the clients production would use:
kubectl, psql, redis-cli and HTTP. One lab serves the session; the lifecycle test makes its own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import yaml

from irlib.lab import procs
from irlib.lab.config import PARTS, LabConfig
from irlib.lab.faults import FAULTS
from irlib.profile import load_profile
from tests.helpers import LabHandle, irlib, parse_exports, wait_until


def test_up_prints_exports_and_generated_tokens(lab: LabHandle) -> None:
    exports = lab.exports
    assert Path(exports["KUBECONFIG"]).is_file()
    assert Path(exports["IRLIB_PROFILE"]).is_file()
    assert len(exports["IRLIB_ADMIN_TOKEN"]) >= 24 and len(exports["IRLIB_BROKER_TOKEN"]) >= 24
    assert "lab ready in" in lab.up_output.stderr  # progress goes to stderr, exports to stdout


def test_profile_names_secrets_by_env_var_only(lab: LabHandle) -> None:
    profile = load_profile(lab.exports["IRLIB_PROFILE"])
    assert profile.api.token_env == "IRLIB_ADMIN_TOKEN"
    assert profile.broker.token_env == "IRLIB_BROKER_TOKEN"
    assert profile.kubernetes.namespace == "trading"
    text = Path(lab.exports["IRLIB_PROFILE"]).read_text()
    for token_env in ("IRLIB_ADMIN_TOKEN", "IRLIB_BROKER_TOKEN"):
        assert lab.exports[token_env] not in text


def test_status_json_lists_every_part_ready_with_its_address(lab: LabHandle) -> None:
    status = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)
    for part in PARTS:
        assert status[part]["state"] == "ready", (part, status[part])
    assert status["postgres"]["dsn"].startswith("postgresql://")
    assert status["redis"]["url"].startswith("redis://")
    for part in ("prometheus", "api", "broker", "market_data"):
        assert status[part]["url"].startswith("http://127.0.0.1:")
    assert status["kubernetes"]["kubeconfig"] == lab.exports["KUBECONFIG"]
    assert status["faults"] == []


def test_up_twice_keeps_the_running_lab(lab: LabHandle) -> None:
    before = {p: procs.running_pid(lab.lab.pid_file(p)) for p in PARTS}
    again = lab.irlib("lab", "up", check=True)
    assert parse_exports(again.stdout) == lab.exports
    assert {p: procs.running_pid(lab.lab.pid_file(p)) for p in PARTS} == before
    assert "already up" in again.stderr


def test_up_leaves_the_part_a_fault_stopped_stopped(lab: LabHandle) -> None:
    lab.irlib("lab", "inject", "redis-down", check=True)
    try:
        control = json.loads(Path(lab.state_dir, "control.json").read_text())
        assert control["stopped_parts"] == ["redis"]
        lab.irlib("lab", "up", check=True)
        assert not lab.lab.running("redis")
    finally:
        lab.irlib("lab", "clear", check=True)
    assert lab.lab.running("redis")
    assert json.loads(Path(lab.state_dir, "control.json").read_text()) == {
        "faults": [],
        "stopped_parts": [],
    }


def test_kubectl_sees_a_healthy_trading_namespace(lab: LabHandle) -> None:
    pods = json.loads(lab.kubectl("get", "pods", "-n", "trading", "-o", "json").stdout)["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert {"timescaledb-0", "redis-0"} <= names
    apps = {p["metadata"]["labels"]["app"] for p in pods}
    assert apps >= {"api-service", "execution-service", "calibration-service", "data-ingestion"}
    for pod in pods:
        ready = [c for c in pod["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", pod["metadata"]["name"]
    table = lab.kubectl("get", "pods", "-n", "trading").stdout
    assert "Running" in table and "READY" in table
    nodes = lab.kubectl("get", "nodes").stdout
    assert nodes.count(" Ready ") >= 2
    assert "trading-api" in lab.kubectl("get", "ingress", "-n", "trading").stdout
    assert "api-service" in lab.kubectl("get", "deployments", "-n", "trading").stdout


def test_prometheus_scrapes_the_api_latency_histogram(lab: LabHandle) -> None:
    prom = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)["prometheus"]
    query = "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))"

    def p99() -> list:
        resp = httpx.get(prom["url"] + "/api/v1/query", params={"query": query}, timeout=5)
        return [r for r in resp.json()["data"]["result"] if r["value"][1] != "NaN"]

    wait_until("a p99 latency from Prometheus", p99, timeout=40)


def test_api_pod_logs_are_the_api_services_real_log_lines(lab: LabHandle) -> None:
    def logged() -> str:
        out = lab.kubectl(
            "logs", "-l", "app=api-service", "-n", "trading", "--tail=50", "--since=10m"
        ).stdout
        return out if "GET /" in out else ""

    assert " 200 " in wait_until("access-log lines in api-service pod logs", logged)


def test_faults_lists_every_fault_with_its_runbook(lab: LabHandle) -> None:
    out = irlib("lab", "faults", check=True).stdout
    for name, fault in FAULTS.items():
        assert name in out and fault.runbook in out


def test_unknown_fault_is_refused_and_changes_nothing(lab: LabHandle) -> None:
    control = Path(lab.state_dir, "control.json").read_text()
    result = lab.irlib("lab", "inject", "disk-full")
    assert result.returncode == 2
    assert "unknown fault 'disk-full'" in result.stderr
    for name in FAULTS:
        assert name in result.stderr
    assert Path(lab.state_dir, "control.json").read_text() == control


def test_clear_with_no_fault_says_so(lab: LabHandle) -> None:
    result = lab.irlib("lab", "clear", check=True)
    assert "no active fault" in result.stderr


def test_lab_lifecycle_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    state = tmp_path / "lab"
    env = {**os.environ, "IRLIB_ADMIN_TOKEN": "admin-token-from-the-environment-0123"}
    env.pop("IRLIB_BROKER_TOKEN", None)
    refused = irlib("lab", "inject", "bad-deploy", "--state-dir", str(state), env=env)
    assert refused.returncode == 2 and "not running" in refused.stderr
    up = irlib("lab", "up", "--state-dir", str(state), env=env, timeout=180, check=True)
    try:
        exports = parse_exports(up.stdout)
        assert "IRLIB_ADMIN_TOKEN" not in exports  # the user's own token is not echoed
        assert "IRLIB_BROKER_TOKEN" in exports
        cfg = LabConfig.load(state)
        pids = [procs.read_pid(f) for f in cfg.run_dir.glob("*.pid")]
        assert len(pids) >= len(PARTS)
        assert all(procs.is_alive(*p) for p in pids if p)
        cfg_yaml = yaml.safe_load(Path(exports["IRLIB_PROFILE"]).read_text())
        assert cfg_yaml["api"]["token_env"] == "IRLIB_ADMIN_TOKEN"
    finally:
        down = irlib("lab", "down", "--state-dir", str(state), env=env, timeout=120)
    assert down.returncode == 0
    assert not any(procs.is_alive(*p) for p in pids if p)
    for part, port in cfg.ports.items():
        assert not procs.port_open(cfg.host, port), f"{part} still listens on {port}"
    again = irlib("lab", "down", "--purge", "--state-dir", str(state), env=env)
    assert again.returncode == 0
    assert not state.exists() and not Path(cfg.pg_data_dir).exists()
