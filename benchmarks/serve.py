"""Benchmark: `irlib serve` from the alert to the chat, against one drill lab in one run.

    .venv/bin/python benchmarks/serve.py [--runs 5]

Each figure is the median of `--runs` (at least 5), beside its baselines from the same lab:
webhook arrival -> chat message with warm kernels and with a child `irlib run` per alert (two
servers of its own, `serve.warm_kernels` 2 and 0), the seed's first-five-minutes commands as a
plain curl/kubectl/psql/redis-cli script, papermill's empty-notebook floor (CLI), a cold `irlib
run p1_system_unavailable`; then `bad-deploy` injected into the lab until the lab's own serve
posts its message, in parts: the fault becoming visible (the rule's condition turning true:
Prometheus' activeAt), the rule's `for`, Alertmanager's group wait and send, the run. Starts and
stops its own lab and servers; prints one line per figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from floor import papermill_floor
from lab_env import exports  # benchmarks/lab_env.py; a script's folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
IRLIB = [sys.executable, "-m", "irlib.cli"]

from irlib.lab.lab import Lab  # noqa: E402

CHAT: list[tuple[float, str]] = []  # (time.time() on arrival, text)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        CHAT.append((time.time(), json.loads(body)["text"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def until(
    what: str, condition: Callable[[], Any], timeout: float = 300, every: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            sys.exit(f"waited {timeout:g} s for {what}")
        time.sleep(every)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode not in (0, 1):
        sys.exit(f"{shlex.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0, out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s (median of {len(values)})"


class Serve:
    """An `irlib serve` of the benchmark's own, on the lab's profile with `warm` kernels."""

    def __init__(self, env: dict[str, str], work: Path, warm: int) -> None:
        profile = yaml.safe_load(Path(env["IRLIB_PROFILE"]).read_text())
        profile["serve"] = {**(profile.get("serve") or {}), "warm_kernels": warm}
        path = work / f"profile-{warm}.yaml"
        path.write_text(yaml.safe_dump(profile))
        self.port, self.token, self.warm = free_port(), env["IRLIB_SERVE_TOKEN"], warm
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            *IRLIB,
            "serve",
            "--profile",
            str(path),
            "--port",
            str(self.port),
            "--outputs",
            str(work / f"outputs-{warm}"),
        ]
        self.log = open(work / f"serve-{warm}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        until("serve to answer", self._up, 60)

    def _up(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.get(self.url + path, headers=headers, timeout=10).json()

    def ready(self) -> bool:
        status = self.get("/v1/status")
        return bool(status["running"] == 0 and status["warm_kernels"] >= self.warm)

    def webhook_to_message(self, name: str) -> tuple[float, dict[str, Any]]:
        until("an idle server with its kernels warm", self.ready, 180)
        now = datetime.now().astimezone().isoformat()
        alert = {
            "status": "firing",
            "labels": {"alertname": name, "severity": "P1", "runbook": "p1_system_unavailable"},
            "annotations": {"summary": "benchmark"},
            "startsAt": now,
            "fingerprint": name,
        }
        body = {"version": "4", "groupKey": name, "status": "firing", "alerts": [alert]}
        seen = len(CHAT)
        t0 = time.time()
        answer = httpx.post(
            self.url + "/v1/alertmanager",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        at = until(
            f"the message of {name}",
            lambda: next((t for t, text in CHAT[seen:] if f"on alert {name}" in text), None),
            300,
        )
        run = until(
            f"{name} done",
            lambda: next(
                (
                    r
                    for r in self.get("/v1/runs")["runs"]
                    if r["group_key"] == name and r["state"] in ("done", "failed")
                ),
                None,
            ),
            300,
        )
        return at - t0, run

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def seed_script(env: dict[str, str]) -> str:
    """The seed's first five minutes as a person pastes them: the lab's URLs for its hosts
    (no `kubectl exec` in the lab: psql and redis-cli reach the servers directly)."""
    p = yaml.safe_load(Path(env["IRLIB_PROFILE"]).read_text())
    ns = p["kubernetes"]["namespace"]
    return "\n".join(
        [
            f"curl -s {p['api']['url']}/health",
            f"kubectl get pods -n {ns}",
            f"kubectl get ingress -n {ns}",
            f"kubectl get events -n {ns} --sort-by=.lastTimestamp | tail -20",
            f"kubectl rollout history deployment/api-service -n {ns}",
            "kubectl get nodes",
            f"kubectl top pods -n {ns}",
            "kubectl top nodes",
            f"kubectl logs -l app=api-service -n {ns} --tail=100 --since=10m",
            f"psql '{p['postgres']['dsn']}' -c 'SELECT count(*) FROM pg_stat_activity;'",
            f"redis-cli -u {p['redis']['url']} PING",
            f"curl -s {p['market_data']['url']}/status",
            f"curl -s {p['broker']['url']}/health",
        ]
    )


def alerts_active(env: dict[str, str], lab: Lab) -> bool:
    firing = httpx.get(lab.config.url("prometheus") + "/api/v1/alerts", timeout=5).json()
    am = httpx.get(lab.config.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    return bool(firing["data"]["alerts"] or am)


def injection_to_message(env: dict[str, str], lab: Lab, state: Path) -> dict[str, float]:
    """bad-deploy into a quiet lab whose serve was just restarted (its cooldown is per
    process), until that serve's message; the parts from what Prometheus and serve record."""
    until("a quiet lab", lambda: not alerts_active(env, lab), 300, 1)
    lab.stop_part("serve")
    run([*IRLIB, "lab", "up", "--state-dir", str(state)], env)
    url, token = lab.config.url("serve"), env["IRLIB_SERVE_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    until(
        "the lab's serve warm",
        lambda: (
            httpx.get(url + "/v1/status", headers=headers, timeout=5).json()["warm_kernels"] >= 1
        ),
        180,
        0.5,
    )
    prom = lab.config.url("prometheus") + "/api/v1/alerts"
    seen, firing_at = len(CHAT), None
    t0 = time.time()
    run([*IRLIB, "lab", "inject", "bad-deploy", "--state-dir", str(state)], env)
    injected = time.time()
    active_at = None
    while True:
        mine = [
            a
            for a in httpx.get(prom, timeout=5).json()["data"]["alerts"]
            if a["labels"].get("runbook") == "p1_system_unavailable"
        ]
        if mine and active_at is None:
            active_at = min(datetime.fromisoformat(a["activeAt"]).timestamp() for a in mine)
        if firing_at is None and any(a["state"] == "firing" for a in mine):
            firing_at = time.time()
        message = next((t for t, text in CHAT[seen:] if "bad-deploy" in text), None)
        if message is not None:
            break
        if time.time() - t0 > 300:
            sys.exit("no message within 300 s of bad-deploy")
        time.sleep(0.1)
    runs = httpx.get(url + "/v1/runs", headers=headers, timeout=5).json()["runs"]
    arrived = min(datetime.fromisoformat(r["received_at"]).timestamp() for r in runs)
    run([*IRLIB, "lab", "clear", "--state-dir", str(state)], env)
    assert active_at is not None and firing_at is not None
    # `irlib lab inject` returns once the fault shows where production shows it: the rule's
    # condition is often true before that, so each part is measured from the one before it
    return {
        "total": message - t0,
        "inject": injected - t0,
        "visible": active_at - t0,  # the fault in the metrics, the rule's condition true
        "for": firing_at - active_at,  # the rule's `for` (3s in the lab) and an evaluation
        "group": arrived - firing_at,  # Alertmanager: group wait, then the webhook
        "run": message - arrived,  # irlib serve: the run until its chat message
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = max(5, args.runs)
    chat = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=chat.serve_forever, daemon=True).start()
    work = Path(tempfile.mkdtemp(prefix="irlib-bench-serve-"))
    state = work / "lab"
    env = {
        **os.environ,
        "IRLIB_INCIDENT_WEBHOOK_URL": f"http://127.0.0.1:{chat.server_address[1]}/hook",
    }
    for k in ("IRLIB_ADMIN_TOKEN", "IRLIB_BROKER_TOKEN", "IRLIB_SERVE_TOKEN", "IRLIB_PROFILE"):
        env.pop(k, None)
    servers: list[Serve] = []
    try:
        _, out = run([*IRLIB, "lab", "up", "--state-dir", str(state)], env)
        env = {**exports(out), "IRLIB_INCIDENT_WEBHOOK_URL": env["IRLIB_INCIDENT_WEBHOOK_URL"]}
        lab = Lab(state)
        until("a quiet lab", lambda: not alerts_active(env, lab), 300, 1)
        warm, cold = Serve(env, work, 2), Serve(env, work, 0)
        servers += [warm, cold]
        script = work / "seed.sh"
        script.write_text("set -e\n" + seed_script(env) + "\n")
        papermill = papermill_floor(work)
        cold_run = [*IRLIB, "run", "p1_system_unavailable", "--outputs", str(work / "runs")]
        figures: dict[str, list[float]] = {}

        def add(name: str, value: float) -> None:
            figures.setdefault(name, []).append(value)

        # round robin: every figure of a round shares the machine's load of that moment
        for i in range(n):
            for server, label in ((warm, "warm"), (cold, "cold")):
                took, r = server.webhook_to_message(f"Bench{label}{i}")
                add(f"webhook -> message, {label} kernels", took)
                add(f"  (serve's own: arrival -> verdict, {label})", r["to_verdict_s"])
            add("seed's commands as a plain script", run(["bash", str(script)], env)[0])
            add("papermill CLI, empty 10-cell notebook", run(papermill, env)[0])
            add("cold irlib run p1_system_unavailable", run(cold_run, env)[0])
        for s in servers:
            s.stop()
        servers = []
        for name, values in figures.items():
            print(f"{name:<48} {median(values)}", flush=True)
        parts: dict[str, list[float]] = {}
        for _ in range(n):
            for k, v in injection_to_message(env, lab, state).items():
                parts.setdefault(k, []).append(v)
        print(f"{'bad-deploy injected -> message (lab serve)':<48} {median(parts['total'])}")
        for k, what in [
            ("visible", "injection -> rule condition true (activeAt)"),
            ("for", "-> firing (rule for: 3s)"),
            ("group", "-> webhook arrives (group wait)"),
            ("run", "-> chat message (the run)"),
        ]:
            print(f"  {what:<46} {median(parts[k])}")
        print(f"  {'(irlib lab inject returns after)':<46} {median(parts['inject'])}")
    finally:
        for s in servers:
            s.stop()
        subprocess.run(
            [*IRLIB, "lab", "down", "--purge", "--state-dir", str(state)],
            capture_output=True,
            env=env,
        )
        chat.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
