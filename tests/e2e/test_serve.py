"""`irlib serve` against the lab: the real Prometheus fires, the real Alertmanager posts with
its bearer token, the runbook runs read-only and its verdict reaches a chat receiver (a small
HTTP server of this test) with a link to the evidence that the server answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import LabHandle, irlib, wait_until


@dataclass
class Chat:
    """A Slack-compatible incoming webhook: every posted text, in order."""

    url: str
    texts: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def chat() -> Iterator[Chat]:
    received: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body)["text"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Chat(f"http://127.0.0.1:{server.server_address[1]}/hooks/T0/B0/secret", received)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Served:
    url: str
    token: str
    outputs: Path
    chat: Chat

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.get(self.url + path, headers=headers, timeout=10)

    def post(self, body: Any, token: str | None = None, raw: bytes | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = raw if raw is not None else json.dumps(body).encode()
        return httpx.post(
            self.url + "/v1/alertmanager", content=content, headers=headers, timeout=10
        )

    def runs(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/runs").json()["runs"])


def _active_alerts(lab: LabHandle) -> list[Any]:
    firing = httpx.get(lab.lab.config.url("prometheus") + "/api/v1/alerts", timeout=5).json()
    am = httpx.get(lab.lab.config.url("alertmanager") + "/api/v2/alerts", timeout=5).json()
    return firing["data"]["alerts"] + am  # pending ones too


@pytest.fixture(scope="module")
def served(lab: LabHandle, chat: Chat) -> Iterator[Served]:
    """The lab's own `irlib serve` (part `serve`), restarted by `irlib lab up` with this test's
    chat receiver in IRLIB_INCIDENT_WEBHOOK_URL, as a person would point it at their chat."""
    # a quiet lab first: nothing firing that the server would triage before the test acts
    wait_until("no alert active in the lab", lambda: not _active_alerts(lab), 180)
    assert lab.lab.stop_part("serve")
    env = {**lab.env, "IRLIB_INCIDENT_WEBHOOK_URL": chat.url}
    irlib("lab", "up", "--state-dir", lab.state_dir, env=env, check=True)
    status = json.loads(lab.irlib("lab", "status", "--json", check=True).stdout)
    assert status["serve"]["state"] == "ready"
    url = status["serve"]["url"]
    assert url == lab.lab.config.url("serve")  # where the lab's Alertmanager posts
    yield Served(url, lab.exports["IRLIB_SERVE_TOKEN"], lab.lab.state_dir / "outputs", chat)


def _group(key: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alert = {
        "status": status,
        "labels": {"alertname": "TestAlert", **labels},
        "annotations": {"summary": "a test alert"},
        "startsAt": now,
        "endsAt": now if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": key,
    }
    return {"version": "4", "groupKey": key, "status": status, "receiver": "irlib",
            "alerts": [alert], "commonLabels": alert["labels"]}  # fmt: skip


def test_no_token_a_wrong_one_or_a_malformed_payload_runs_nothing(served: Served) -> None:
    good = _group("auth-test", runbook="p2_high_latency")
    assert httpx.get(served.url + "/healthz", timeout=5).status_code == 200
    assert served.post(good).status_code == 401
    assert served.post(good, token="wrong").status_code == 401
    assert served.get("/v1/runs", token="wrong").status_code == 401
    assert httpx.get(served.url + "/v1/incidents", timeout=5).status_code == 401
    assert served.post(None, token=served.token, raw=b"{not json").status_code == 400
    for broken in (
        {**good, "version": "3"},
        {**good, "alerts": []},
        {**good, "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]},  # no startsAt
        [good],
    ):
        answer = served.post(broken, token=served.token)
        assert answer.status_code == 400, broken
        assert "error" in answer.json()
    assert served.runs() == []
    journal = served.get("/v1/alerts").json()["alerts"]
    assert not any(e["group_key"] == "auth-test" for e in journal)


def test_bad_deploy_reaches_the_chat_with_its_verdict_and_evidence(
    lab: LabHandle, served: Served
) -> None:
    lab.irlib("lab", "inject", "bad-deploy", check=True)
    try:
        text = wait_until(
            "a chat message naming bad-deploy",
            lambda: next((t for t in served.chat.texts if "bad-deploy" in t), None),
            180,
        )
        assert "rollback:api-service" in text
        assert "NOT run" in text
        assert "--confirm rollback:api-service" in text
        runs = served.runs()
        assert len(runs) == 1
        run = runs[0]
        assert run["runbook"] == "p1_system_unavailable"
        assert run["verdict"]["cause"] == "bad-deploy"
        link = run["evidence"]
        assert f"Evidence: {link}" in text
        page = httpx.get(link, headers={"Authorization": f"Bearer {served.token}"}, timeout=10)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert httpx.get(link, timeout=10).status_code == 401
        # read-only: the bad revision is still there, nobody rolled it back
        pods = lab.kubectl("get", "pods", "-n", "trading", "-l", "app=api-service", "-o", "json")
        images = {
            c["image"] for p in json.loads(pods.stdout)["items"] for c in p["spec"]["containers"]
        }
        assert any(i.endswith(":1.9.0") for i in images)
        incident = served.get(f"/v1/incidents/{run['incident']}").json()
        kinds = [e["kind"] for e in incident["timeline"]]
        assert {"opened", "alert", "run-started", "verdict", "message", "delivery"} <= set(kinds)
        assert incident["record"]["severity"] == "P1"
    finally:
        lab.irlib("lab", "clear", check=True)

    def resolution_noted() -> bool:
        # this episode's resolution (the incident may be an open one of an earlier episode)
        timeline = served.get(f"/v1/incidents/{run['incident']}").json()["timeline"]
        return any(
            e["kind"] == "alert-resolved" and e["seq"] > incident["timeline"][-1]["seq"]
            for e in timeline
        )

    wait_until("the resolution in the incident's timeline", resolution_noted, 180)
    assert len(served.runs()) == 1  # the resolution started nothing
    assert len([t for t in served.chat.texts if "bad-deploy" in t]) == 1
    # no secret in any message or evidence file: the tokens, the chat's URL
    secrets = [served.token, served.chat.url, lab.exports.get("IRLIB_ADMIN_TOKEN", "")]
    secrets = [s for s in secrets if s]
    for text in served.chat.texts:
        assert not any(s in text for s in secrets)
    for path in served.outputs.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert not any(s in content for s in secrets), path


@pytest.mark.parametrize(
    ("fault", "runbook"),
    [
        ("position-mismatch", "p1_execution_failures"),
        ("lock-contention", "p2_high_latency"),
        ("missing-surface", "p2_calibration_failures"),
    ],
    ids=["p1-execution", "p2-latency", "p2-calibration"],
)
def test_each_runbook_is_triggered_by_one_of_its_alerts(
    lab: LabHandle, served: Served, fault: str, runbook: str
) -> None:
    before = {r["id"] for r in served.runs()}

    def ran() -> dict[str, Any] | None:
        return next(
            (
                r
                for r in served.runs()
                if r["runbook"] == runbook
                and r["id"] not in before
                and r["state"] != "queued"
                and r["state"] != "running"
            ),
            None,
        )

    lab.irlib("lab", "inject", fault, check=True)
    try:
        run = wait_until(f"a run of {runbook}", ran, 240)
        assert run["state"] == "done", run
        assert run["verdict"]["cause"] == fault, run["verdict"]
        wait_until(
            f"a chat message naming {fault}",
            lambda: any(fault in t and runbook in t for t in served.chat.texts),
            30,
        )
    finally:
        lab.irlib("lab", "clear", check=True)
        wait_until("no alert active in the lab", lambda: not _active_alerts(lab), 180)


def test_one_run_per_group_then_cooldown_and_unrouted_alerts_are_recorded(served: Served) -> None:
    group = _group("cooldown-test", runbook="p2_calibration_failures")
    first = served.post(group, token=served.token)
    assert first.status_code == 202, first.text
    assert first.json()["action"] == "queued"
    again = served.post(group, token=served.token)
    assert again.json()["action"] == "already-running"
    run_id = first.json()["run"]

    def finished() -> bool:
        return any(r["id"] == run_id and r["state"] in ("done", "failed") for r in served.runs())

    wait_until("the run to finish", finished, 180)
    later = served.post(group, token=served.token)
    assert later.status_code == 200
    assert later.json()["action"] == "cooldown"
    assert [r["id"] for r in served.runs() if r["group_key"] == "cooldown-test"] == [run_id]

    unrouted = served.post(_group("unrouted-test", team="nobody"), token=served.token)
    assert unrouted.status_code == 200
    assert unrouted.json()["action"] == "unrouted"
    journal = served.get("/v1/alerts").json()["alerts"]
    assert journal[0]["group_key"] == "unrouted-test"
    assert "no runbook label" in journal[0]["reason"]
    resolved = served.post(_group("unknown-resolved", status="resolved"), token=served.token)
    assert resolved.json()["action"] == "resolution-recorded"
    assert not any(r["group_key"] == "unknown-resolved" for r in served.runs())


def test_metrics_and_page_agree_with_the_runs(served: Served) -> None:
    """The lab's serve: `/metrics` and the page want the token; the metrics count the runs
    `/v1/runs` lists, the page lists them (the page in a browser: test_serve_page.py)."""
    from prometheus_client.parser import text_string_to_metric_families

    assert httpx.get(served.url + "/metrics", timeout=10).status_code == 401
    runs = [r for r in served.runs() if r["state"] in ("done", "failed")]
    answer = served.get("/metrics")
    assert answer.status_code == 200
    samples = [s for f in text_string_to_metric_families(answer.text) for s in f.samples]
    ended = sum(s.value for s in samples if s.name == "irlib_serve_runs_total")
    assert ended == len(runs)
    messages = sum(
        s.value for s in samples if s.name == "irlib_serve_webhook_to_message_seconds_count"
    )
    assert messages == sum(1 for r in runs if r["to_message_s"] is not None)
    assert not any(served.token in line for line in answer.text.splitlines())
    assert httpx.get(served.url + "/", timeout=10).status_code == 401
    page = served.get("/").text
    assert page.count('<tr class="run"') == len(served.runs())
    assert served.token not in page and served.chat.url not in page
